"""The Provider protocol: the seam between the engine and a backend.

Failure semantics (every provider must keep them):

* Methods raise only ``reconciler.errors`` types. SDK and I/O exceptions are wrapped at
  this boundary with ``raise ... from exc``: ``TransientProviderError`` when the same call
  may succeed later (throttling, 5xx, timeouts; with ``retry_after`` when known), else
  ``PermanentProviderError`` with a message that says what to do.
* ``apply`` executes one change and is idempotent with respect to the plan: if it is
  interrupted and the engine re-plans, the next plan describes exactly what remains.
* ``REPLACE`` is create-before-delete: the new resource exists before the old one is
  removed, so no device is left without a deployment.
* A provider never modifies or deletes a resource whose owner is not this environment.
* Secrets (registry passwords) are fetched at apply time and written only into the
  backend; they never appear in snapshots, exceptions, logs or progress messages.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from reconciler.model.plan import Change
from reconciler.model.specs import DesiredState, EnvironmentSpec
from reconciler.model.state import Snapshot


class Progress(Protocol):
    """Where providers report long work (hashing, uploads, image builds)."""

    def step(self, message: str) -> None:
        """A new unit of work started ("building image iris-scorer:3f2a…")."""

    def advance(self, done: int, total: int | None) -> None:
        """Progress within the current step, in arbitrary units (bytes, polls)."""


class SilentProgress:
    def step(self, message: str) -> None:
        pass

    def advance(self, done: int, total: int | None) -> None:
        pass


@dataclass(frozen=True)
class LockInfo:
    """Who holds an environment's apply lock."""

    holder: str  # "user@host pid 1234"
    since: str  # ISO 8601
    expires: str | None = None
    lock_id: str | None = None  # unique per run; what `reconciler force-unlock` takes

    def __str__(self) -> str:
        text = f"{self.holder} since {self.since}"
        details = [f"expires {self.expires}"] if self.expires else []
        if self.lock_id:
            details.append(f"lock id {self.lock_id}")
        return f"{text} ({', '.join(details)})" if details else text


class Provider(Protocol):
    """A backend for one environment."""

    def read_snapshot(self, desired: DesiredState, *, health: bool = False) -> Snapshot:
        """Read the actual state: every owned resource of this environment, the unmanaged
        deployments of the hub, and the registries ``desired`` refers to. Bounded calls:
        one list per kind (plus paging), never one call per resource. Rollout health
        (``LiveDeployment.health``) is read only with ``health=True``: drift needs it,
        plans do not."""

    def count_devices(self, target_condition: str) -> int:
        """How many devices a target condition selects now."""

    def apply(self, change: Change, desired: DesiredState, progress: Progress) -> None:
        """Execute one change (see the module docstring for the rules)."""

    def rotate_registry_credentials(self, registry: str) -> str:
        """Start using new pull credentials for a registry; return the new credential
        version. Nothing else changes now: the next plan replaces every deployment that
        embeds the old credentials (their content is immutable), and the old credentials
        stop working once no owned deployment uses them any more."""

    def lock(self, holder: str) -> AbstractContextManager[None]:
        """Hold the environment's apply lock for the duration of the ``with`` block.
        Raises ``LockHeld`` naming the current holder when another run has it."""

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Remove the environment's apply lock if, and only if, its lock id is ``lock_id`` (a
        compare-and-delete: a lock renewed or taken over meanwhile stays). Returns who held it.
        ``PermanentProviderError`` when there is no lock or it has another id."""

    def close(self) -> None:
        """Release connections. Safe to call twice."""


ProviderFactory = Callable[[EnvironmentSpec], Provider]

