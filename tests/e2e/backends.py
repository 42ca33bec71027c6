"""The backends the end-to-end scenarios run on, behind one small test-side interface.

A scenario drives only the CLI; it inspects results through the provider's own snapshot,
so the same assertions hold on every backend. What a backend cannot do through the CLI
(register simulated devices, edit a resource behind the reconciler's back, create an
unmanaged deployment) is done here, the way a person or another tool would do it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pytest

from reconciler.model.state import Snapshot
from reconciler.providers.registry import open_provider
from reconciler.spec.loader import load_environment
from tests.conftest import copy_sample
from tests.e2e.brownfield import Brownfield


class Backend(Protocol):
    name: str
    environment: str  # which sample environment it runs: environments/<environment>

    def prepare(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """Copy the sample into ``root`` and point the environment at this backend."""

    def add_devices(self, env_dir: Path, devices: dict[str, dict[str, str]]) -> None: ...

    def set_priority_out_of_band(self, env_dir: Path, deployment_id: str, priority: int) -> None: ...

    def create_unmanaged(self, env_dir: Path, deployment_id: str, condition: str, priority: int,
                         layered: bool) -> None: ...

    def create_brownfield(self, env_dir: Path, deployment: Brownfield, content: dict[str, Any]) -> None:
        """An unmanaged deployment with this content, labels and metrics, made as its owner made it."""

    def running(self, env_dir: Path) -> dict[str, str]:
        """Device id -> the id of the base deployment it applies ("" for none)."""

    def set_failing(self, env_dir: Path, device_id: str, failing: bool = True) -> None:
        """Make the device report failure (or success again) for what it applies."""

    def register_model(self, env_dir: Path, name: str, file: Path) -> int:
        """Register ``file`` as the next version of ``name`` the way a training pipeline would (no ownership
        marks, no fingerprint); return the version number."""

    def model_uri(self, name: str, data: bytes) -> str:
        """Put ``data`` where this backend reads model URIs (spec.source.uri) under the file name ``name``."""

    def pin_time(self, moment: datetime) -> None:
        """Set the backend's clock to ``moment`` (tests pin the reconciler's with ``RECONCILER_NOW``)."""

    def pass_evaluation_cycle(self) -> None:
        """Let the time pass in which IoT Hub evaluates every deployment's metrics again (5 minutes)."""


def snapshot(env_dir: Path, *, health: bool = False) -> Snapshot:
    desired = load_environment(env_dir)
    provider = open_provider(desired.environment)
    try:
        return provider.read_snapshot(desired, health=health)
    finally:
        provider.close()


@contextmanager
def holding_lock(env_dir: Path, holder: str) -> Iterator[None]:
    provider = open_provider(load_environment(env_dir).environment)
    try:
        with provider.lock(holder):
            yield
    finally:
        provider.close()


EMPTY_LAYER = {"$edgeAgent": {}}
EMPTY_BASE = {"$edgeAgent": {"properties.desired": {"modules": {}}},
              "$edgeHub": {"properties.desired": {"routes": {}}}}


class LocalBackend:
    name = "local"
    environment = "local"

    def __init__(self, state: Path):
        self.state = state

    def prepare(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.setenv("RECONCILER_STATE_DIR", str(self.state))
        return copy_sample(root, "local")

    def _provider(self, env_dir: Path):  # type: ignore[no-untyped-def]
        from reconciler.providers.local.provider import LocalProvider

        return LocalProvider(load_environment(env_dir).environment)

    def add_devices(self, env_dir: Path, devices: dict[str, dict[str, str]]) -> None:
        provider = self._provider(env_dir)
        provider.simulator.add(list(devices.items()))
        provider.close()

    def set_priority_out_of_band(self, env_dir: Path, deployment_id: str, priority: int) -> None:
        database = sqlite3.connect(self.state / "state.db")
        with database:
            database.execute("UPDATE deployments SET priority = ? WHERE id = ?", (priority, deployment_id))
        database.close()

    def create_unmanaged(self, env_dir: Path, deployment_id: str, condition: str, priority: int,
                         layered: bool) -> None:
        provider = self._provider(env_dir)
        provider.create_unmanaged_deployment(deployment_id, EMPTY_LAYER if layered else EMPTY_BASE, condition,
                                             priority, layered=layered)
        provider.close()

    def create_brownfield(self, env_dir: Path, deployment: Brownfield, content: dict[str, Any]) -> None:
        provider = self._provider(env_dir)
        provider.create_unmanaged_deployment(deployment.id, content, deployment.condition, deployment.priority,
                                             layered=deployment.layered, labels=deployment.labels,
                                             metrics=deployment.metrics)
        provider.close()

    def running(self, env_dir: Path) -> dict[str, str]:
        provider = self._provider(env_dir)
        try:
            found = {}
            for device in provider.simulator.list():
                modules = provider.simulator.show(device.id).modules
                found[device.id] = modules["scorer"][0] if "scorer" in modules else ""
            return found
        finally:
            provider.close()

    def set_failing(self, env_dir: Path, device_id: str, failing: bool = True) -> None:
        provider = self._provider(env_dir)
        provider.simulator.set_failing(device_id, failing)
        provider.close()

    def pin_time(self, moment: datetime) -> None:
        """Nothing: the local simulator's figures are those of the moment they are read."""

    def pass_evaluation_cycle(self) -> None:
        """Nothing: the local simulator's figures are those of the moment they are read."""

    def register_model(self, env_dir: Path, name: str, file: Path) -> int:
        provider = self._provider(env_dir)
        try:
            digest = provider.blobs.put(file)
            return int(provider.store.add_model_version(name, "", "", {}, {}, {file.name: digest}))
        finally:
            provider.close()

    def model_uri(self, name: str, data: bytes) -> str:
        outside = self.state.parent / "outside-git"
        outside.mkdir(parents=True, exist_ok=True)
        (outside / name).write_bytes(data)
        return (outside / name).as_uri()


class AzureBackend:
    """The prod sample on Azure: the real SDKs against the emulator (tests/azure_emulator).

    Devices are seeded straight into the emulated hub (as registering real devices would);
    hand edits and unmanaged deployments go through the IoT Hub SDK, as a person would
    make them with their own tools."""

    name = "azure"
    environment = "prod"
    ACR_TASKS = "    images:\n      builder: acr-tasks\n"  # under spec.azure in environment.yaml
    SDK_V2 = "    ml:\n      sdk: v2\n"  # its builder is acr-tasks by default, the only one on v2

    def __init__(self, emulator: Any, tmp_path: Path, builder: str = "aml", sdk: str = "v1"):
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.builder = builder  # azure.images.builder: "aml" (the sample's default) or "acr-tasks"
        self.sdk = sdk  # azure.ml.sdk: "v1" (the sample's default) or "v2"
        self._pinned: datetime | None = None

    def prepare(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        from tests.azure import conftest as azure
        from tests.azure_emulator import arm

        self.emulator.reset()
        arm.add_workspace(self.emulator.state, azure.SUBSCRIPTION, azure.RESOURCE_GROUP, azure.WORKSPACE,
                          registry_name=azure.ACR)
        monkeypatch.setenv("AZURE_TENANT_ID", arm.DEFAULT_TENANT)
        monkeypatch.setenv("AZURE_CLIENT_ID", "edge-reconciler-ci")
        monkeypatch.setenv("AZURE_CLIENT_SECRET", azure.CLIENT_SECRET)
        monkeypatch.setenv("IOTHUB_CONNECTION_STRING", azure.CONNECTION_STRING)
        monkeypatch.setenv("RECONCILER_RETRY_SCALE", "0.001")
        monkeypatch.setenv("RECONCILER_CACHE_DIR", str(self.tmp_path / "cache"))
        env_dir = copy_sample(root, "prod")
        settings = (self.SDK_V2 if self.sdk == "v2" else "") + (self.ACR_TASKS if self.builder == "acr-tasks" else "")
        if settings:
            environment = env_dir / "environment.yaml"
            text = environment.read_text()
            assert "  registries:\n" in text
            environment.write_text(text.replace("  registries:\n", settings + "  registries:\n", 1))
        return env_dir

    def add_devices(self, env_dir: Path, devices: dict[str, dict[str, str]]) -> None:
        from tests.azure import conftest as azure
        from tests.azure_emulator import iothub

        iothub.seed_devices(self.emulator.state, devices.items(), hub=azure.HUB)

    def _manager(self):  # type: ignore[no-untyped-def]
        from azure.iot.hub import IoTHubConfigurationManager

        from tests.azure import conftest as azure

        return IoTHubConfigurationManager.from_connection_string(azure.CONNECTION_STRING)

    def set_priority_out_of_band(self, env_dir: Path, deployment_id: str, priority: int) -> None:
        from azure.iot.hub.models import Configuration

        manager = self._manager()
        live = manager.get_configuration(deployment_id)
        edited = Configuration(id=live.id, schema_version=live.schema_version, labels=live.labels,
                               content=live.content, target_condition=live.target_condition,
                               priority=priority, metrics=live.metrics)
        manager.protocol.configuration.create_or_update(deployment_id, edited, if_match=f'"{live.etag}"')

    def create_unmanaged(self, env_dir: Path, deployment_id: str, condition: str, priority: int,
                         layered: bool) -> None:
        from azure.iot.hub.models import Configuration, ConfigurationContent

        content = ConfigurationContent(modules_content=EMPTY_LAYER if layered else EMPTY_BASE)
        self._manager().create_configuration(Configuration(
            id=deployment_id, content=content, target_condition=condition, priority=priority, labels={}))

    def create_brownfield(self, env_dir: Path, deployment: Brownfield, content: dict[str, Any]) -> None:
        from azure.iot.hub.models import Configuration, ConfigurationContent, ConfigurationMetrics

        self._manager().create_configuration(Configuration(
            id=deployment.id, content=ConfigurationContent(modules_content=content),
            target_condition=deployment.condition, priority=deployment.priority, labels=dict(deployment.labels),
            metrics=ConfigurationMetrics(queries=dict(deployment.metrics))))

    def running(self, env_dir: Path) -> dict[str, str]:
        from tests.azure import conftest as azure
        from tests.azure_emulator import iothub

        hub = iothub.get_hub(self.emulator.state, azure.HUB)
        applied = hub.assignment().applied_edge
        return {device: next((c["id"] for c in reversed(applied.get(device, [])) if not iothub.is_layered(c)), "")
                for device in hub.devices if hub.devices[device].is_edge}

    def set_failing(self, env_dir: Path, device_id: str, failing: bool = True) -> None:
        from tests.azure import conftest as azure
        from tests.azure_emulator import iothub

        iothub.set_device_report(self.emulator.state, [device_id],
                                 iothub.REPORT_FAILED if failing else iothub.REPORT_SUCCESS, hub=azure.HUB)

    def register_model(self, env_dir: Path, name: str, file: Path) -> int:
        from azure.identity import ClientSecretCredential
        from azureml.core.model import Model

        from reconciler.providers.azure.ml import WorkspaceConnection, _working_directory
        from tests.azure import conftest as azure
        from tests.azure_emulator import arm

        credential = ClientSecretCredential(arm.DEFAULT_TENANT, "training-pipeline", azure.CLIENT_SECRET)
        connection = WorkspaceConnection(azure.SUBSCRIPTION, azure.RESOURCE_GROUP, azure.WORKSPACE, credential)
        with _working_directory(file.parent):
            model = connection.call(lambda: Model.register(connection.workspace, model_path=file.name,
                                                           model_name=name), what=name, write=True)
        return int(model.version)

    def model_uri(self, name: str, data: bytes) -> str:
        from tests.azure_emulator import aml

        aml.put_blob_object(self.emulator.state, ("contosomodels", "models", f"iris/{name}"), data)
        return f"https://contosomodels.blob.core.windows.net/models/iris/{name}"

    def pin_time(self, moment: datetime) -> None:
        """The emulated hub's clock, which its metrics evaluation cycle (every 5 minutes) runs on, moves as the
        pinned time moves. It moves by the same steps rather than to the same moment: the other emulated services
        (token passwords' creation times on ACR, AAD tokens' expiry) keep the wall clock, and a hub behind them
        would make passwords look generated after the deployments that embed them."""
        from tests.azure_emulator import iothub

        if self._pinned is not None:
            iothub.advance_clock(self.emulator.state, (moment - self._pinned).total_seconds())
        self._pinned = moment

    def pass_evaluation_cycle(self) -> None:
        from tests.azure_emulator import iothub

        iothub.advance_clock(self.emulator.state, iothub.METRICS_EVALUATION_SECONDS)
