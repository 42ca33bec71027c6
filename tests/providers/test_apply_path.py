"""The one apply path (``providers.apply.Executor``) over the local adapters: the order of a replace, what
it refuses before any write, and what survives the engine when a change fails."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.engine import Engine
from reconciler.errors import PermanentProviderError, TransientProviderError
from reconciler.model.plan import Action
from reconciler.model.specs import EnvironmentSpec, Kind
from reconciler.providers.apply import Executor, repository_of
from reconciler.providers.base import Adapters, SilentProgress
from reconciler.providers.local.provider import LocalProvider
from tests.providers.test_local_provider import Repo


class Recorder:
    """An adapter that records the write calls it forwards."""

    WRITES = frozenset({"register", "update", "delete_owned", "build", "delete", "create"})

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self._inner, self._calls = inner, calls

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in self.WRITES:
            return method

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(f"{name} {args[0] if isinstance(args[0], str) else ''}".strip())
            return method(*args, **kwargs)

        return recorded


def recording_executor(repo: Repo, calls: list[str]) -> Executor:
    inner = repo.provider.adapters()
    adapters = Adapters(*(Recorder(a, calls) for a in (inner.models, inner.images, inner.deployments,
                                                          inner.credentials)))
    return Executor(repo.desired().environment, adapters, SilentProgress())


def test_a_replace_creates_the_new_deployment_before_it_deletes_the_old(repo: Repo) -> None:
    repo.apply()
    old = repo.deployment("base").id
    repo.edit("      image: scorer", "      image: scorer\n      env: {MODE: fast}")
    (change,) = [c for c in repo.plan().changes if c.action is Action.REPLACE]
    calls: list[str] = []
    recording_executor(repo, calls).apply(change)
    assert calls == [f"create {change.target}", f"delete {old}"]
    assert repo.plan().changes == ()


def test_nothing_is_written_when_the_old_deployment_of_a_replace_is_not_ours(repo: Repo) -> None:
    repo.apply()
    repo.edit("      image: scorer", "      image: scorer\n      env: {MODE: fast}")
    (change,) = [c for c in repo.plan().changes if c.action is Action.REPLACE]
    with repo.db() as db:  # someone relabels the old deployment as another environment's
        db.execute("UPDATE deployments SET labels = json_set(labels, '$.\"edge-reconciler.environment\"', 'prod')")
    calls: list[str] = []
    with pytest.raises(PermanentProviderError, match="owned by environment 'prod', not 'dev'"):
        recording_executor(repo, calls).apply(change)
    assert calls == []


def test_an_image_built_already_by_this_environment_is_done(repo: Repo) -> None:
    """A build whose answer was lost, or an apply killed after the build: applying the change again
    builds nothing."""
    plan = repo.plan()
    for change in plan.changes:
        if change.key.kind is not Kind.DEPLOYMENT:
            recording_executor(repo, []).apply(change)
    image_change = next(c for c in plan.changes if c.key.kind is Kind.IMAGE)
    calls: list[str] = []
    recording_executor(repo, calls).apply(image_change)
    assert calls == []


def test_image_inputs_changed_since_the_plan_are_refused(repo: Repo) -> None:
    plan = repo.plan()
    recording_executor(repo, []).apply(plan.changes[0])  # the model
    (repo.root / "code" / "score.py").write_text((repo.root / "code" / "score.py").read_text() + "\n# edited\n")
    calls: list[str] = []
    with pytest.raises(PermanentProviderError, match="entry script, conda file, source directory.*changed since"):
        recording_executor(repo, calls).apply(plan.changes[1])
    assert calls == []


def test_an_image_whose_registered_model_version_was_deleted_since_the_plan_is_not_built(repo: Repo) -> None:
    """``spec.source.registered``: the image packages exactly that version, read again right before the build."""
    from reconciler.core import planner
    from reconciler.core.model_sources import registered_fingerprints
    from reconciler.spec.fingerprints import HashCache, compute_fingerprints
    from tests.providers.test_local_provider import BASE, IMAGE, LAYER

    weights = repo.root / "models" / "clf" / "weights.json"
    version = repo.provider.store.add_model_version("clf-pipeline", "", "", {}, {},
                                                    {"weights.json": repo.provider.blobs.put(weights)})
    repo.write_specs("apiVersion: reconciler/v1\nkind: Model\nmetadata:\n  name: clf\nspec:\n  source:\n"
                     f"    registered: {{name: clf-pipeline, version: {version}}}\n", IMAGE, BASE, LAYER)
    desired = repo.desired()
    snapshot = repo.provider.read_snapshot(desired)
    fingerprints = compute_fingerprints(desired, HashCache(), registered=registered_fingerprints(desired, snapshot))
    (build,) = [c for c in planner.plan(desired, fingerprints, snapshot).changes if c.key.kind is Kind.IMAGE]
    with repo.db() as db:  # the pipeline's owner deletes it meanwhile
        db.execute("DELETE FROM models WHERE name = 'clf-pipeline'")
    calls: list[str] = []
    with pytest.raises(PermanentProviderError) as raised:
        recording_executor(repo, calls).apply(build)
    assert str(raised.value) == (f"model/clf: registered version clf-pipeline:{version} no longer exists; run "
                                 "`reconciler plan` again")
    assert calls == []


def test_a_failed_change_keeps_its_type_and_retry_after_through_the_engine(repo: Repo) -> None:
    class Throttled(LocalProvider):
        def adapters(self) -> Adapters:
            inner = super().adapters()

            class Busy:
                def __getattr__(self, name: str) -> Any:
                    if name == "register":
                        def register(*args: Any, **kwargs: Any) -> None:
                            raise TransientProviderError("busy; wait a minute", resource="model/clf", retry_after=42)
                        return register
                    return getattr(inner.models, name)

            return Adapters(Busy(), inner.images, inner.deployments, inner.credentials)  # type: ignore[arg-type]

    def factory(environment: EnvironmentSpec) -> LocalProvider:
        return Throttled(environment)

    with Engine(repo.env_dir, provider_factory=factory) as engine, \
            pytest.raises(TransientProviderError) as failed:
        engine.apply()
    assert failed.value.retry_after == 42 and failed.value.resource == "model/clf"
    assert str(failed.value) == ("model/clf: busy; wait a minute [applied 0 of 4 changes before this one; run "
                                 "`reconciler plan` to see what remains, then apply again]")
    assert not (repo.state / "apply.lock").exists()


@pytest.mark.parametrize(("image", "address", "repository"), [
    ("contoso.azurecr.io/iris-scorer:3f2a", "contoso.azurecr.io", "iris-scorer"),
    ("CONTOSO.azurecr.io/team/scorer@sha256:ab", "contoso.azurecr.io", "team/scorer"),
    ("mcr.microsoft.com/azureiotedge-agent:1.5", "contoso.azurecr.io", None),
    ("contoso.azurecr.io", "contoso.azurecr.io", None),
])
def test_the_repositories_a_credential_must_pull(image: str, address: str, repository: str | None) -> None:
    assert repository_of(image, address) == repository

