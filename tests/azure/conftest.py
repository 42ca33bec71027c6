"""Fixtures for the Azure provider against the emulator (``tests/azure_emulator``), with the real SDKs.

``azure_world`` gives a fresh emulated Azure (the prod sample's workspace, its registry, an IoT Hub with a
few edge devices), the process environment a CI job would have (proxy + CA bundle, a service principal in
``AZURE_*`` for ``DefaultAzureCredential``, the hub's connection string in ``IOTHUB_CONNECTION_STRING``,
retries scaled down) and a copy of ``environments/prod`` to edit. Fixture names are prefixed (``azure_``)
so they never shadow ``ml_fixtures``' in the same folder.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.core import planner
from reconciler.model.plan import Plan
from reconciler.model.specs import DesiredState, Kind
from reconciler.providers.azure.provider import AzureProvider
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.azure_emulator import acr, arm, iothub, testing
from tests.azure_emulator.server import AzureEmulator
from tests.conftest import apply_change, copy_sample

# The ids of environments/prod/environment.yaml.
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-edge-prod"
WORKSPACE = "mlw-edge-prod"
ACR = "contosoedgeprod"
HUB = "contoso-edge-prod.azure-devices.net"
HUB_KEY = base64.b64encode(b"hub-key-that-must-never-leak-0123").decode()
CONNECTION_STRING = f"HostName={HUB};SharedAccessKeyName=iothubowner;SharedAccessKey={HUB_KEY}"
CLIENT_SECRET = "client-secret-that-must-never-leak"
DEVICES = {
    "cam-a1": {"environment": "prod", "site": "a"},
    "cam-a2": {"environment": "prod", "site": "a"},
    "cam-b1": {"environment": "prod", "site": "b"},
    "other-1": {"environment": "staging", "site": "a"},
}


@pytest.fixture(scope="module")
def azure_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEmulator]:
    with testing.running_emulator(tmp_path_factory.mktemp("home")) as emulator:
        yield emulator


@dataclass
class AzureWorld:
    """The emulator, a copy of environments/prod, and helpers to plan and apply through ``AzureProvider``."""

    emulator: AzureEmulator
    env_dir: Path
    providers: list[AzureProvider] = field(default_factory=list)

    # --- the specs --------------------------------------------------------------------

    def desired(self) -> DesiredState:
        return load_environment(self.env_dir)

    def edit(self, file: str, old: str, new: str) -> None:
        path = self.env_dir / file
        text = path.read_text()
        assert old in text, f"{old!r} not in {file}"
        path.write_text(text.replace(old, new, 1))

    # --- the provider -----------------------------------------------------------------

    def provider(self, **kwargs: Any) -> AzureProvider:
        provider = AzureProvider(self.desired().environment, **kwargs)
        self.providers.append(provider)
        return provider

    def plan(self, provider: AzureProvider | None = None, *, prune: bool = False) -> Plan:
        provider = provider or self.provider()
        desired = self.desired()
        fingerprints = compute_fingerprints(desired, HashCache())
        return planner.plan(desired, fingerprints, provider.read_snapshot(desired), prune=prune)

    def apply(self, provider: AzureProvider | None = None, *, prune: bool = False,
              kinds: frozenset[Kind] = frozenset(Kind)) -> Plan:
        """Plan and apply the changes of ``kinds`` (all by default), as the engine does."""
        provider = provider or self.provider()
        desired = self.desired()
        plan = self.plan(provider, prune=prune)
        for change in plan.changes:
            if change.key.kind in kinds:
                apply_change(provider, change, desired.environment)
        return plan

    def close(self) -> None:
        for provider in self.providers:
            provider.close()

    # --- the emulated services ----------------------------------------------------------

    @property
    def hub(self) -> iothub.Hub:
        return iothub.get_hub(self.emulator.state, HUB)

    def configurations(self) -> dict[str, dict[str, Any]]:
        return dict(self.hub.configurations)

    @property
    def registry(self) -> acr.RegistryRecord:
        record = acr.find_registry(self.emulator.state, ACR)
        assert record is not None
        return record

    def pass_evaluation_cycle(self) -> None:
        """Let the hub's metrics evaluation cycle pass (``iothub.METRICS_EVALUATION_SECONDS`` of its clock): the
        figures of every deployment are then those of the hub as it is now."""
        iothub.advance_clock(self.emulator.state, iothub.METRICS_EVALUATION_SECONDS)

    def hub_requests(self, method: str | None = None, path_contains: str | None = None) -> list[Any]:
        return self.emulator.log.requests(method, HUB, path_contains)

    def arm_calls(self, method: str | None = None, path_contains: str = "Microsoft.ContainerRegistry") -> list[Any]:
        return [c for c in self.emulator.calls(method, "management.azure.com") if path_contains in c.path]


# How the hub answers configuration reads: registry passwords as written, or masked (nothing published says
# which the real hub does). The fixture runs in the first mode unless a test asks for both:
# ``@BOTH_PASSWORD_MODES`` (indirect parametrization of ``azure_world``).
READABLE, MASKED = "passwords-readable", "passwords-masked"
BOTH_PASSWORD_MODES = pytest.mark.parametrize("azure_world", [READABLE, MASKED], indirect=True)


@pytest.fixture
def azure_world(request: pytest.FixtureRequest, azure_emulator: AzureEmulator, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureWorld]:
    azure_emulator.reset()
    arm.add_workspace(azure_emulator.state, SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE, registry_name=ACR)
    iothub.seed_devices(azure_emulator.state, DEVICES.items(), hub=HUB)
    iothub.set_password_masking(azure_emulator.state, getattr(request, "param", READABLE) == MASKED, hub=HUB)
    monkeypatch.setenv("AZURE_TENANT_ID", arm.DEFAULT_TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", "edge-reconciler-ci")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("IOTHUB_CONNECTION_STRING", CONNECTION_STRING)
    monkeypatch.setenv("RECONCILER_RETRY_SCALE", "0.001")
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    world = AzureWorld(azure_emulator, copy_sample(tmp_path / "repo", "prod"))
    try:
        yield world
    finally:
        world.close()
    assert azure_emulator.errors == [], azure_emulator.errors[0] if azure_emulator.errors else ""
    assert azure_emulator.unmatched == [], [f"{r.method} {r.host}{r.path}" for r in azure_emulator.unmatched]
