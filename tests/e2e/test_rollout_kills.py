"""A rollout step killed at every provider call, then run again, ends where an uninterrupted run ends.

For each step (start, advance, complete; and start + rollback on a failing canary) the test first runs it
without interruption and counts the calls it makes on the backend's adapters. Then, for every k, it
restores the state from before the step, kills the apply just before its k-th call (the process dies:
nothing after it runs, no error handling), and runs the apply again at the same time. The hub must end
exactly as after the uninterrupted run, and a further plan must have nothing to do.

Local backend: the apply path (``providers.apply``) is the same on every backend, and the kill strikes at
its seam with the adapters, which is where an Azure apply would lose its process too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.state import Snapshot
from reconciler.providers import registry
from reconciler.providers.base import Adapters
from reconciler.providers.local.provider import LocalProvider
from tests.e2e.backends import LocalBackend, snapshot
from tests.e2e.helpers import Workspace
from tests.e2e.test_rollouts import FLEET, at, new_content, with_rollout


class Killed(BaseException):
    """The process died: nothing catches it, as nothing would run after a kill."""


class Counting:
    """An adapter that counts every call on the class's shared counter, and dies at ``kill_at``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if not callable(method):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            KillableProvider.calls += 1
            if KillableProvider.calls == KillableProvider.kill_at:
                raise Killed(f"killed before call {KillableProvider.calls} ({name})")
            return method(*args, **kwargs)

        return counted


class KillableProvider(LocalProvider):
    calls = 0
    kill_at: int | None = None

    def adapters(self) -> Adapters:
        inner = super().adapters()
        return Adapters(*(Counting(a) for a in (inner.models, inner.images, inner.deployments, inner.credentials)))


def hub_state(env_dir: Path) -> list[tuple[Any, ...]]:
    """What the hub holds for the deployments, without creation times (a re-created one is newer)."""
    state: Snapshot = snapshot(env_dir)
    return sorted((d.id, d.target_condition, d.priority, tuple(sorted(d.labels.items())), d.rollout, d.owner)
                  for d in state.deployments)


@pytest.fixture
def rollout_ws(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Workspace:
    backend = LocalBackend(tmp_path / "state")
    ws = Workspace(tmp_path / "repo", backend.prepare(tmp_path / "repo", monkeypatch), capsys)
    backend.add_devices(ws.env_dir, {"cam-a1": {"environment": "dev", "site": "a"},
                                     "cam-a2": {"environment": "dev", "site": "a"},
                                     "cam-b1": {"environment": "dev", "site": "b"}})
    monkeypatch.setitem(registry.PROVIDERS, "local", f"{__name__}:KillableProvider")
    at(monkeypatch, "09:00")
    ws.apply()
    with_rollout(ws)
    new_content(ws)
    return ws


def killed_at_every_call(ws: Workspace, state: Path, time: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Check the step due at ``time``; return how many adapter calls it makes."""
    before = state.parent / f"before-{time.replace(':', '')}"
    shutil.copytree(state, before)
    at(monkeypatch, time)
    KillableProvider.calls, KillableProvider.kill_at = 0, None
    ws.apply()
    calls = KillableProvider.calls
    expected = hub_state(ws.env_dir)
    assert calls > 0
    for kill_at in range(1, calls + 1):
        shutil.rmtree(state)
        shutil.copytree(before, state)
        KillableProvider.calls, KillableProvider.kill_at = 0, kill_at
        with pytest.raises(Killed):
            ws.run("apply", ws.env, "--auto-approve")
        KillableProvider.kill_at = None
        for _ in range(2):  # the re-run; a second one must have nothing left to do
            ws.apply()
        assert hub_state(ws.env_dir) == expected, f"killed before call {kill_at} of {calls} at {time}"
        assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0
    return calls


def test_every_step_of_a_good_rollout_survives_a_kill_at_every_call(
        rollout_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    calls = {step: killed_at_every_call(rollout_ws, state, time, monkeypatch)
             for step, time in (("start", "10:00"), ("advance", "10:31"), ("complete", "11:32"))}
    print(f"\nadapter calls per step: {calls}")
    base = [entry for entry in hub_state(rollout_ws.env_dir) if entry[0].startswith("iris-base-")]
    assert len(base) == 1 and not base[0][4].touched  # the new content alone, no rollout marks left


def test_a_rollback_survives_a_kill_at_every_call(rollout_ws: Workspace, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    at(monkeypatch, "10:00")
    rollout_ws.apply()
    LocalBackend(tmp_path / "state").set_failing(rollout_ws.env_dir, "cam-b1")
    calls = killed_at_every_call(rollout_ws, tmp_path / "state", "10:06", monkeypatch)
    print(f"\nadapter calls of a rollback: {calls}")
    running = LocalBackend(tmp_path / "state").running(rollout_ws.env_dir)
    assert len({running[device] for device in FLEET}) == 1  # every device back on the stable version
