"""Fixtures for the end-to-end scenarios: one workspace per backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.backends import Backend, LocalBackend
from tests.e2e.helpers import Workspace

BACKENDS = ["local"]


def make_backend(name: str, tmp_path: Path) -> Backend:
    if name == "local":
        return LocalBackend(tmp_path / "state")
    raise ValueError(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request.param, tmp_path)


@pytest.fixture
def ws(backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str],
       monkeypatch: pytest.MonkeyPatch) -> Workspace:
    root = tmp_path / "repo"
    env_dir = backend.prepare(root, monkeypatch)
    workspace = Workspace(root, env_dir, capsys)
    tier = "dev" if backend.environment == "local" else backend.environment
    backend.add_devices(env_dir, {
        "cam-a1": {"environment": tier, "site": "a"},
        "cam-a2": {"environment": tier, "site": "a"},
        "cam-b1": {"environment": tier, "site": "b"},
        "other-1": {"environment": "staging", "site": "a"},
    })
    return workspace
