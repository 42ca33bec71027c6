"""Adoption (``spec.adopt``) in the pure planner: in place when the content is the same, a replace when it is
not, and never a deployment the spec does not name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.core import planner
from reconciler.model.plan import Action, FieldChange
from reconciler.model.specs import DesiredState, Fingerprints
from reconciler.model.state import LiveDeployment, Snapshot
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.core.snapshot_json import converged


@pytest.fixture
def desired(sample_env: Path) -> DesiredState:
    return load_environment(sample_env)


@pytest.fixture
def fingerprints(desired: DesiredState) -> Fingerprints:
    return compute_fingerprints(desired, HashCache())


def hand_made(desired: DesiredState, fingerprints: Fingerprints) -> tuple[Snapshot, LiveDeployment]:
    """The converged state, except that iris-base was made by hand (no ownership) under another id."""
    snapshot = converged(desired, fingerprints)
    base = next(d for d in snapshot.deployments if d.name == "iris-base")
    unmanaged = replace(base, id="hand-made", name="hand-made", owner=None, content_hash=None)
    deployments = tuple(d for d in snapshot.deployments if d.name != "iris-base") + (unmanaged,)
    return replace(snapshot, deployments=deployments), unmanaged


def adopting(desired: DesiredState, **changes: object) -> DesiredState:
    spec = replace(desired.deployments["iris-base"], adopt="hand-made", **changes)  # type: ignore[arg-type]
    return replace(desired, deployments={**desired.deployments, "iris-base": spec})


def test_same_content_is_adopted_in_place(desired, fingerprints):
    snapshot, unmanaged = hand_made(desired, fingerprints)
    plan = planner.plan(adopting(desired), fingerprints, snapshot)
    assert [(str(c.key), c.action, c.target) for c in plan.changes] == [
        ("deployment/iris-base", Action.UPDATE, "hand-made")]
    change = plan.changes[0]
    assert change.reason == ("adopts unmanaged deployment hand-made (spec.adopt): adds the ownership labels; the "
                             "content is unchanged")
    assert change.fields == (FieldChange("owner", None, "local"),)
    assert change.actual == unmanaged
    assert "deployment/hand-made" not in plan.unmanaged


def test_a_mutable_field_changes_with_the_adoption(desired, fingerprints):
    snapshot, _ = hand_made(desired, fingerprints)
    plan = planner.plan(adopting(desired, priority=77), fingerprints, snapshot)
    change = plan.changes[0]
    assert (change.action, change.target) == (Action.UPDATE, "hand-made")
    assert change.reason.startswith("adopts unmanaged deployment hand-made (spec.adopt): adds the ownership labels; ")
    assert [f.path for f in change.fields] == ["owner", "priority"]


def test_other_content_is_adopted_by_a_visible_replace(desired, fingerprints):
    snapshot, unmanaged = hand_made(desired, fingerprints)
    other = {**unmanaged.content, "extra": {"properties.desired": {"x": 1}}}
    snapshot = replace(snapshot, deployments=tuple(replace(d, content=other) if d.id == "hand-made" else d
                                                   for d in snapshot.deployments))
    plan = planner.plan(adopting(desired), fingerprints, snapshot)
    change = plan.changes[0]
    assert (change.action, change.actual.id) == (Action.REPLACE, "hand-made")  # type: ignore[union-attr]
    assert change.target.startswith("iris-base-")
    assert change.reason.startswith("adopts unmanaged deployment hand-made (spec.adopt), whose content the spec "
                                    "does not reproduce: content is immutable in IoT Hub")
    assert "content.extra.properties.desired.x" in [f.path for f in change.fields]


def test_once_adopted_the_deployment_keeps_its_id(desired, fingerprints):
    snapshot, unmanaged = hand_made(desired, fingerprints)
    wanted = adopting(desired)
    first = planner.plan(wanted, fingerprints, snapshot).changes[0]
    adopted = replace(unmanaged, owner="local", name="iris-base", content_hash=first.desired.content_hash)  # type: ignore[union-attr]
    after = replace(snapshot, deployments=tuple(adopted if d.id == "hand-made" else d for d in snapshot.deployments))
    assert planner.plan(wanted, fingerprints, after).changes == ()


def test_without_adopt_an_unmanaged_deployment_is_never_touched(desired, fingerprints):
    snapshot, _ = hand_made(desired, fingerprints)
    plan = planner.plan(desired, fingerprints, snapshot)
    assert [(str(c.key), c.action) for c in plan.changes] == [("deployment/iris-base", Action.CREATE)]
    assert "deployment/hand-made" in plan.unmanaged


def test_a_deployment_owned_by_another_environment_is_not_adopted(desired, fingerprints):
    snapshot, _ = hand_made(desired, fingerprints)
    snapshot = replace(snapshot, deployments=tuple(replace(d, owner="staging") if d.id == "hand-made" else d
                                                   for d in snapshot.deployments))
    plan = planner.plan(adopting(desired), fingerprints, snapshot)
    assert [(str(c.key), c.action) for c in plan.changes] == [("deployment/iris-base", Action.CREATE)]
