"""Chaos: the whole flow (first apply, a model change, a credential rotation) under random faults.

About 20% of the requests fail (throttled, unavailable, connection dropped before the service acted) and
about 15% of the writes lose their answer after the service acted. Seeds are fixed, so a failure here
replays exactly.

* Azure: the faults are the emulator's (``tests/azure_emulator``), on every host the real SDKs reach but
  blob storage: azureml-core uploads model files with a storage client of its own that waits 15 s and more
  before it repeats a failed upload, and no setting shortens that.
* Local: there is no network (reads of a local SQLite file do not fail now and then), so the faults strike
  the writes at the adapter seam instead (``ChaosProvider``, put in the provider registry for the test): a
  write fails before it is made, or is made and then reported as failed, which is what a lost answer looks
  like to the apply path. Progress is kept, so each re-run has less to do.

Every command must exit 0 or 1 (an expected error, never a bug), every step must converge within a few
re-runs (the count is printed), nothing may be registered twice, and no lock may be left behind.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import TransientProviderError
from reconciler.providers import registry
from reconciler.providers.base import Adapters
from reconciler.providers.local.provider import LocalProvider
from tests.e2e.backends import Backend, snapshot
from tests.e2e.helpers import Result, Workspace

MODEL_FILE = "models/iris/model/model.json"
SEEDS = [7, 2026]
FAIL_PERCENT = 20
LOST_PERCENT = 15
MAX_RUNS = 10  # runs of one step before the test gives up


class Chaotic:
    """An adapter whose writes fail at random, before or after they act."""

    WRITES = frozenset({"register", "update", "delete_owned", "build", "delete", "create"})

    def __init__(self, inner: Any, rng: random.Random) -> None:
        self._inner, self._rng = inner, rng

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in self.WRITES:
            return method

        def chaotic(*args: Any, **kwargs: Any) -> Any:
            if self._rng.random() * 100 < FAIL_PERCENT:
                raise TransientProviderError(f"{name}: injected failure (nothing was done); try again later")
            result = method(*args, **kwargs)
            if self._rng.random() * 100 < LOST_PERCENT:
                raise TransientProviderError(f"{name}: injected lost answer (it was done); run `reconciler plan` "
                                             "to see what remains")
            return result

        return chaotic


class ChaosProvider(LocalProvider):
    """The local backend with ``Chaotic`` adapters (seeded per test)."""

    rng = random.Random(0)

    def adapters(self) -> Adapters:
        inner = super().adapters()
        return Adapters(*(Chaotic(adapter, self.rng) for adapter in (inner.models, inner.images,
                                                                      inner.deployments, inner.credentials)))


def faults_on(backend: Backend, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend.name == "local":
        ChaosProvider.rng = random.Random(seed)
        monkeypatch.setitem(registry.PROVIDERS, "local", f"{__name__}:ChaosProvider")
        return
    faults = backend.emulator.faults  # type: ignore[attr-defined]
    share = FAIL_PERCENT / 3
    hosts = r"(?!.*\.blob\.core\.windows\.net$).*"
    faults.add(status=429, retry_after=0, percent=share, seed=seed, host=hosts)
    faults.add(status=503, retry_after=0, percent=share, seed=seed + 1, host=hosts)
    faults.add(drop=True, percent=share, seed=seed + 2, host=hosts)
    faults.lose_answers(percent=LOST_PERCENT, seed=seed + 3, method="PUT|POST|PATCH|DELETE", host=hosts)


def converge(ws: Workspace, *command: str, failures: list[str]) -> int:
    """Run ``command`` until it succeeds and the plan is clean; return how many runs it took. The errors of
    the runs that failed go into ``failures`` (printed at the end: what made a re-run necessary)."""
    for run in range(1, MAX_RUNS + 1):
        result = ws.run(*command)
        assert_expected(result)
        if result.code != 0:
            failures.append(result.err.strip().splitlines()[-1])
            continue
        plan = ws.run("plan", ws.env, "--detailed-exitcode")
        assert_expected(plan)
        if plan.code == 0:
            return run
        failures.append(f"plan after a successful apply: exit {plan.code}: {plan.out}{plan.err}")
    pytest.fail(f"{' '.join(command)} did not converge in {MAX_RUNS} runs:\n" + "\n".join(failures))


def assert_expected(result: Result) -> None:
    assert result.code in (0, 1, 2), result.err
    assert "Traceback" not in result.err and "bug in edge-reconciler" not in result.err, result.err


def lock_left(backend: Backend, ws: Workspace) -> bool:
    if backend.name == "local":
        return any(Path(ws.root.parent / "state").rglob("apply.lock"))
    from reconciler.providers.azure.lock import lock_device_id
    from tests.azure import conftest as azure
    from tests.azure_emulator import iothub

    return lock_device_id("prod") in iothub.get_hub(backend.emulator.state, azure.HUB).devices  # type: ignore[attr-defined]


def versions(ws: Workspace) -> list[tuple[str, int]]:
    state = snapshot(ws.env_dir)
    return sorted((m.name, m.version) for m in state.models if m.owner == state.environment)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_flow_converges_under_random_faults(ws: Workspace, backend: Backend, seed: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    faults_on(backend, seed, monkeypatch)
    failures: list[str] = []
    runs = {"first apply": converge(ws, "apply", ws.env, "--auto-approve", failures=failures)}
    assert not lock_left(backend, ws)

    ws.edit(MODEL_FILE, '"classes"', '"comment": "retrained", "classes"')
    runs["model change"] = converge(ws, "apply", ws.env, "--auto-approve", failures=failures)
    assert not lock_left(backend, ws)

    registry_name = "local" if backend.name == "local" else "workspace"
    for _ in range(MAX_RUNS):
        rotated = ws.run("rotate-credentials", ws.env, registry_name)
        assert_expected(rotated)
        if rotated.code == 0:
            break
        failures.append(rotated.err.strip().splitlines()[-1])
    runs["rotation"] = converge(ws, "apply", ws.env, "--auto-approve", failures=failures)
    assert not lock_left(backend, ws)

    if backend.name == "azure":
        backend.emulator.faults.clear()  # type: ignore[attr-defined]
    else:
        monkeypatch.setitem(registry.PROVIDERS, "local", "reconciler.providers.local.provider:LocalProvider")
    assert versions(ws) == [("iris-classifier", 1), ("iris-classifier", 2)]  # nothing registered twice
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0
    print(f"\n{backend.name} seed {seed}: runs per step {runs}; re-runs were caused by:", *failures, sep="\n  ")
