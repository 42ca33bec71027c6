"""Fixtures for the Azure ML adapter (``reconciler.providers.azure.ml``) against the emulator.

The real azureml-core, azure-identity and azure-containerregistry reach the emulator through its HTTPS proxy;
the credential is the production one (``DefaultAzureCredential``), fed a client secret through
``AZURE_CLIENT_ID`` / ``AZURE_TENANT_ID`` / ``AZURE_CLIENT_SECRET``, which the emulator's AAD accepts.

A test module loads them with ``pytest_plugins = ["tests.azure.ml_fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.providers.azure.ml import WorkspaceConnection
from tests.azure_emulator import arm, testing
from tests.azure_emulator.server import AzureEmulator
from tests.conftest import copy_sample

SUB = "00000000-0000-4000-8000-0000000000b2"
RG = "rg-edge-prod"
WS = "mlw-edge-prod"
REGISTRY = "emuacr"
TENANT = arm.DEFAULT_TENANT


@pytest.fixture(scope="module")
def running_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEmulator]:
    with testing.running_emulator(tmp_path_factory.mktemp("home")) as emulator:
        yield emulator


@pytest.fixture
def emulator(running_emulator: AzureEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureEmulator]:
    """Fresh state: one workspace (``SUB``/``RG``/``WS``) whose registry ``REGISTRY`` is empty, and a service
    principal in the environment, retry waits scaled to nothing. Fails the test if the emulator met a request
    it could not route."""
    running_emulator.reset()
    arm.add_workspace(running_emulator.state, SUB, RG, WS, registry_name=REGISTRY)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", "edge-reconciler-ci")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-a-secret")
    monkeypatch.setenv("RECONCILER_RETRY_SCALE", "0")  # retries without their waits
    yield running_emulator
    assert running_emulator.errors == [], running_emulator.errors[0] if running_emulator.errors else ""
    assert running_emulator.unmatched == [], [f"{r.method} {r.host}{r.path}" for r in running_emulator.unmatched]


@pytest.fixture
def connection(emulator: AzureEmulator) -> WorkspaceConnection:
    from azure.identity import DefaultAzureCredential

    return WorkspaceConnection(SUB, RG, WS, DefaultAzureCredential())


@pytest.fixture
def prod_env(tmp_path: Path) -> Path:
    """A copy of ``environments/prod`` and ``models/`` whose model files a test may change."""
    return copy_sample(tmp_path / "repo", "prod")
