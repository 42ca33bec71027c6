"""The apply path's one exception to "never change what this environment does not own": the unmanaged
deployment a spec names in ``adopt``, and only while its content is what the plan saw."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from reconciler.errors import PermanentProviderError
from reconciler.model.plan import Action, DesiredDeployment
from tests.providers.test_apply_path import recording_executor
from tests.providers.test_local_provider import Repo


def hand_made_copy_of_base(repo: Repo) -> None:
    """Someone made `hand-made` with exactly the content of the base deployment, by hand."""
    repo.apply()
    base = repo.deployment("base")
    repo.provider.create_unmanaged_deployment("hand-made", base.content, base.target_condition, base.priority,
                                              labels={"app": "scorer"})
    repo.edit("  priority: 10\n", "  priority: 10\n  adopt: hand-made\n")


def test_the_adoption_adds_ownership_in_place(repo: Repo) -> None:
    hand_made_copy_of_base(repo)
    changes = repo.plan().changes
    assert [(c.action, c.target) for c in changes] == [(Action.UPDATE, "hand-made"),
                                                      (Action.DELETE, repo.deployment("base").id)]
    calls: list[str] = []
    executor = recording_executor(repo, calls)
    for change in changes:
        executor.apply(change)
    assert calls[0] == "update hand-made"
    assert repo.deployment("base").id == "hand-made"
    assert repo.plan().changes == ()


def test_content_changed_since_the_plan_is_not_adopted_in_place(repo: Repo) -> None:
    hand_made_copy_of_base(repo)
    change = repo.plan().changes[0]
    with repo.db() as db:  # its owner changes the content meanwhile
        db.execute("UPDATE deployments SET content = ? WHERE id = 'hand-made'", (json.dumps({"$edgeAgent": {}}),))
    calls: list[str] = []
    with pytest.raises(PermanentProviderError, match="its content changed since the plan was made"):
        recording_executor(repo, calls).apply(change)
    assert calls == []


def test_an_unmanaged_deployment_the_spec_does_not_adopt_is_refused(repo: Repo) -> None:
    hand_made_copy_of_base(repo)
    change = repo.plan().changes[0]
    assert isinstance(change.desired, DesiredDeployment)
    forged = replace(change, desired=replace(change.desired, spec=replace(change.desired.spec, adopt=None)))
    calls: list[str] = []
    with pytest.raises(PermanentProviderError, match=r"owned by no environment \(unmanaged\), not 'dev'"):
        recording_executor(repo, calls).apply(forged)
    assert calls == []
