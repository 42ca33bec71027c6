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
from pathlib import Path
from typing import Protocol

import pytest

from reconciler.model.state import Snapshot
from reconciler.providers.registry import open_provider
from reconciler.spec.loader import load_environment
from tests.conftest import copy_sample


class Backend(Protocol):
    name: str
    environment: str  # which sample environment it runs: environments/<environment>

    def prepare(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """Copy the sample into ``root`` and point the environment at this backend."""

    def add_devices(self, env_dir: Path, devices: dict[str, dict[str, str]]) -> None: ...

    def set_priority_out_of_band(self, env_dir: Path, deployment_id: str, priority: int) -> None: ...

    def create_unmanaged(self, env_dir: Path, deployment_id: str, condition: str, priority: int,
                         layered: bool) -> None: ...


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
EMPTY_BASE = {"$edgeAgent": {"properties.desired": {"modules": {}}}}


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
        provider.add_devices(list(devices.items()))
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
