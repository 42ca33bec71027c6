"""Fixtures for the end-to-end scenarios: one workspace per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.backends import AzureBackend, Backend, LocalBackend
from tests.e2e.helpers import Workspace

# "azure": SDK v1 with Azure ML's image builds (the defaults); "azure-v2": the Azure scenarios again with
# ``azure.ml.sdk: v2`` (models through azure-ai-ml, images by ACR Tasks, v2's only builder). ACR Tasks on SDK v1
# ("azure-acr-tasks") runs in the scenarios that choose it (test_acr_tasks_builds.py, tests/azure/test_acr_tasks.py):
# a third pass of every scenario would add minutes to `make test` for the same builder code.
BACKENDS = ["local", "azure", "azure-v2"]


@pytest.fixture(scope="module")
def azure_emulator_for_e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One emulator per module, reset for every scenario; its proxy and CA in os.environ so
    that subprocesses (``reconciler`` run as a command) reach it too."""
    from tests.azure_emulator.testing import running_emulator

    with running_emulator(tmp_path_factory.mktemp("home")) as emulator:
        yield emulator


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield LocalBackend(tmp_path / "state")
        return
    emulator = request.getfixturevalue("azure_emulator_for_e2e")
    if request.param == "azure-v2":
        yield AzureBackend(emulator, tmp_path, builder="acr-tasks", sdk="v2")
    else:
        yield AzureBackend(emulator, tmp_path, builder="acr-tasks" if request.param == "azure-acr-tasks" else "aml")
    assert emulator.errors == [], emulator.errors[0] if emulator.errors else ""
    assert emulator.unmatched == [], [f"{r.method} {r.host}{r.path}" for r in emulator.unmatched]


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
