"""The seam between the engine and a backend: the Provider protocol and its adapters.

A provider reads snapshots, holds the lock, and hands out four small adapters (``Adapters``):
a model store, an image store, a deployment store and the registry credentials. The one apply
path (``providers.apply.Executor``) drives them for every change, on every backend: it owns the
order of a replace, the ownership checks, the password placeholders, which model versions an
image packages, the check that the files did not change since the plan, and the messages.
An adapter only calls its store or SDK.

Failure semantics (every adapter must keep them):

* Methods raise only ``reconciler.errors`` types. SDK and I/O exceptions are wrapped at
  this boundary with ``raise ... from exc``: ``TransientProviderError`` when the same call
  may succeed later (throttling, 5xx, timeouts; with ``retry_after`` when known), else
  ``PermanentProviderError`` with a message that says what to do.
* Writes are idempotent with respect to the plan: if an apply is interrupted and the engine
  re-plans, the next plan describes exactly what remains; a write whose answer was lost is
  safe to send again.
* Reads (``get``, ``version``, ``newest``) are fresh: the executor checks ownership on them
  right before it writes.
* Secrets (registry passwords) are fetched at apply time and written only into the
  backend; they never appear in snapshots, exceptions, logs or progress messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from reconciler.model.plan import DesiredImage, DesiredPromotion
from reconciler.model.specs import JSON, DesiredState, EnvironmentSpec, ModelSpec, UriSource
from reconciler.model.state import (
    DeviceModules,
    ImageVersion,
    LiveDeployment,
    ModelVersion,
    PromotionSource,
    SimulatedDevice,
    Snapshot,
)
from reconciler.providers.layout import PackagedModel


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


class SerializedProgress:
    """A ``Progress`` that several threads may report to (concurrent image builds): one call at a time."""

    def __init__(self, inner: Progress) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def step(self, message: str) -> None:
        with self._lock:
            self._inner.step(message)

    def advance(self, done: int, total: int | None) -> None:
        with self._lock:
            self._inner.advance(done, total)


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


class ModelStore(Protocol):
    """Registered model versions."""

    def version(self, name: str, version: int) -> ModelVersion | None:
        """One version as it is now (any owner), or None."""

    def newest(self, name: str, fingerprint: str) -> ModelVersion | None:
        """The newest version of ``name`` this environment owns with these files, or None."""

    def register(self, spec: ModelSpec, fingerprint: str, tags: dict[str, str], progress: Progress) -> None:
        """Upload ``spec.path`` and register it as the next version, with ``tags`` (the user's and the
        ownership keys, ``ownership.FINGERPRINT`` included) and ``spec.properties``. A model from a URI
        (``spec.source.uri``): the file at the URI, registered under its name, and refused
        (``PermanentProviderError``, nothing registered) when its bytes do not have the pinned digest."""

    def update(self, version: ModelVersion, description: str, tags: dict[str, str],
               added_properties: dict[str, str]) -> None:
        """Set the description and the tags (replaced as a whole), add properties (never changed)."""

    def delete_owned(self, name: str) -> None:
        """Delete every version of ``name`` this environment owns. Nothing owned: nothing to do."""


class ImageStore(Protocol):
    """Built scoring images. Images are immutable: a label is built once."""

    def get(self, name: str, label: str) -> ImageVersion | None:
        """The image with this label as it is now, or None."""

    def build(self, image: DesiredImage, models: list[ModelVersion], tags: dict[str, str],
              progress: Progress) -> None:
        """Build ``image`` with these model versions and push it under its label."""

    def delete(self, version: ImageVersion) -> None:
        """Remove the image. Gone already: nothing to do."""

    def promote(self, promotion: DesiredPromotion, tags: dict[str, str], progress: Progress) -> None:
        """Copy the source environment's image (``promotion.source``: its locator and digest) into this
        registry under ``promotion.label``, byte for byte: the same manifest digest, never a build. A source
        that no longer has that digest is a ``PermanentProviderError`` (run the plan again)."""


class DeploymentStore(Protocol):
    """IoT Hub configurations (edge deployments). Content is immutable."""

    def get(self, deployment_id: str) -> LiveDeployment | None:
        """The deployment as it is now (content with password placeholders), or None."""

    def owned(self) -> list[LiveDeployment]:
        """Every deployment this environment owns, as it is now."""

    def create(self, deployment_id: str, content: dict[str, JSON], target_condition: str, priority: int,
               labels: dict[str, str], metrics: dict[str, str], layered: bool) -> None:
        """Create it. ``content`` carries the real registry passwords: the backend keeps them where
        devices read them and nowhere else. An existing one with this id, this owner and this content
        is success (a create whose answer was lost)."""

    def update(self, deployment_id: str, target_condition: str, priority: int, labels: dict[str, str],
               metrics: dict[str, str]) -> None:
        """Change the mutable fields; ``labels`` are complete (the user's and the ownership keys)."""

    def delete(self, deployment_id: str) -> None:
        """Delete it. Gone already: nothing to do."""


@dataclass(frozen=True)
class PullCredential:
    """What devices use to pull from a registry, fetched at apply time."""

    password: str
    version: str  # the credential version a plan's content hash stands for (``LiveRegistry.credential_version``)

    def __repr__(self) -> str:  # never print the password
        return f"PullCredential(version={self.version!r})"


class CredentialStore(Protocol):
    """Registry pull credentials for devices."""

    def credential(self, registry: str, username: str, repositories: set[str]) -> PullCredential:
        """The password for ``username`` (the user the plan rendered), able to pull ``repositories``."""

    def release_unused(self, registry: str, in_use: set[str]) -> None:
        """Retire credentials of ``registry`` that no deployment embeds any more (``in_use``: the
        usernames still embedded). Backends whose credentials cannot be retired do nothing."""


@dataclass(frozen=True)
class Adapters:
    models: ModelStore
    images: ImageStore
    deployments: DeploymentStore
    credentials: CredentialStore


class HeldLock(Protocol):
    """An environment's apply lock, while held."""

    def renew_if_needed(self) -> None:
        """Called before each change: extend a lock that expires. Raises ``LockHeld`` if it was lost."""


class NoRenewal:
    """A lock that never expires (the local file lock)."""

    def renew_if_needed(self) -> None:
        pass


class DeviceSimulator(Protocol):
    """Simulated devices (the local backend's): what deployments target, without hardware."""

    def add(self, devices: Iterable[tuple[str, dict[str, JSON]]]) -> None:
        """Register devices with twin tags, all or none."""

    def exists(self, device_id: str) -> bool: ...

    def tag(self, device_id: str, set_tags: dict[str, JSON], unset: Iterable[str] = ()) -> SimulatedDevice:
        """Set and remove twin tags; return the device as it is now."""

    def set_failing(self, device_id: str, failing: bool = True) -> None:
        """Make the device report failure (or success again) for what it applies."""

    def report(self, device_id: str, modules: dict[str, str | None], reported: dict[str, JSON]) -> SimulatedDevice:
        """Set what the device reports: a status per module ("applied", "success" or "failed"; None
        forgets it) and reported properties (None removes one)."""

    def remove(self, device_id: str) -> None: ...

    def list(self) -> list[SimulatedDevice]: ...

    def show(self, device_id: str) -> DeviceModules:
        """The modules the device runs, by IoT Hub's rules, and the deployment each comes from."""


@runtime_checkable
class ModelUris(Protocol):
    """A provider that reads model files at URIs (``spec.source.uri``): which URIs each backend reads is
    checked by ``validate`` (``spec.checks``)."""

    def model_uri_digest(self, source: UriSource, progress: Progress) -> str:
        """The SHA-256 (hex) of the file at ``source.uri`` as it is now, streamed (never held in memory).
        A backend that holds bytes with the pinned digest already may answer from them without reading the
        URI. ``PermanentProviderError`` when it cannot be read (missing, no access)."""


@runtime_checkable
class Metered(Protocol):
    """A provider whose reads have a budget per run (IoT Hub's device queries), and whose service may pace it."""

    def query_usage(self) -> tuple[int, int]:
        """(spent, budget) so far in this run."""

    def throttled_requests(self) -> tuple[int, float]:
        """(requests the service throttled and that were sent again after the wait it asked, seconds waited)
        so far in this run."""


@runtime_checkable
class ConcurrentBuilds(Protocol):
    """An image store whose builds run remotely and may overlap (ACR Tasks): the engine runs up to
    ``build_slots`` of a plan's consecutive image builds at once, so its ``build`` (and the reads the
    apply path makes around it) must be thread-safe."""

    @property
    def build_slots(self) -> int: ...


@runtime_checkable
class Simulated(Protocol):
    """A provider with simulated devices."""

    @property
    def simulator(self) -> DeviceSimulator: ...


@dataclass(frozen=True)
class Check:
    """One line of ``reconciler doctor``'s checklist: what was checked, what was found, what to do.

    ``status`` is ``ok`` (✓), ``fail`` (✗: something an apply needs is missing; the command exits 1),
    ``warn`` (!: works now, but watch it) or ``info`` (·: a fact worth knowing, nothing to judge).
    ``detail`` and ``fix`` never hold a secret."""

    name: str
    status: str
    detail: str
    fix: str = ""

    OK = "ok"
    FAIL = "fail"
    WARN = "warn"
    INFO = "info"


@runtime_checkable
class Diagnosable(Protocol):
    """A provider that can check, against the real service, what an apply will need (``reconciler doctor``).

    ``diagnose`` reads only, unless ``write_probe``: then it may create, read back and delete one throwaway
    resource of its own, and must delete it even when a check fails. It never raises for a failed check:
    every failure is a ``Check`` with status ``fail`` and what to do."""

    def diagnose(self, *, write_probe: bool = False) -> list[Check]: ...


@runtime_checkable
class DeviceListing(Protocol):
    """A provider that can name the devices a target condition selects (``reconciler where --devices``)."""

    def device_ids(self, target_condition: str) -> list[str]:
        """The ids of the IoT Edge devices ``target_condition`` selects now, sorted: one query (plus paging)."""


@runtime_checkable
class PromotionSources(Protocol):
    """A provider whose built images other environments of the same provider can promote (``promoteFrom``)."""

    def promotable_image(self, name: str, label: str) -> PromotionSource:
        """Image ``name:label`` as this environment holds it: its digest (None when it has not built that
        label) and where another environment's backend copies it from. One read."""


@runtime_checkable
class ImageContents(Protocol):
    """A provider whose images record the model versions they package (``reconciler where``). Backends
    without it (Azure: an image is only a registry tag) are told what the current specs would package."""

    def packaged_versions(self) -> dict[tuple[str, str], dict[str, int]]:
        """(image name, label) -> {model name: version} for every built image: one read."""


class Provider(Protocol):
    """A backend for one environment."""

    def read_snapshot(self, desired: DesiredState, *, health: bool = False,
                      deployments_only: bool = False) -> Snapshot:
        """Read the actual state: every owned resource of this environment, the model versions
        ``desired`` names as a source (``spec.source.registered``, whoever owns them, with their
        content's fingerprint), the unmanaged deployments of the hub, and the registries ``desired``
        refers to. Bounded calls:
        one list per kind (plus paging), never one call per resource. Rollout health
        (``LiveDeployment.health``) is read for every deployment only with ``health=True``
        (drift needs it); otherwise for this environment's rollout candidates only (plans
        judge their gates). ``deployments_only`` leaves models and images out (empty): rollout
        steps (``apply --rollouts-only``) never touch them."""

    def count_devices(self, target_condition: str) -> int:
        """How many devices a target condition selects now."""

    def count_many(self, target_conditions: Sequence[str]) -> dict[str, int | None]:
        """How many devices each condition selects now, in as few backend calls as the backend can;
        None where it cannot count any more in this run (a query budget that is spent)."""

    def adapters(self) -> Adapters:
        """The stores the apply path drives (see ``providers.apply``)."""

    def rotate_registry_credentials(self, registry: str) -> str:
        """Start using new pull credentials for a registry; return the new credential
        version. Nothing else changes now: the next plan replaces every deployment that
        embeds the old credentials (their content is immutable), and the old credentials
        stop working once no owned deployment uses them any more."""

    def lock(self, holder: str) -> AbstractContextManager[HeldLock]:
        """Hold the environment's apply lock for the duration of the ``with`` block.
        Raises ``LockHeld`` naming the current holder when another run has it."""

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Remove the environment's apply lock if, and only if, its lock id is ``lock_id`` (a
        compare-and-delete: a lock renewed or taken over meanwhile stays). Returns who held it.
        ``PermanentProviderError`` when there is no lock or it has another id."""

    def close(self) -> None:
        """Release connections. Safe to call twice."""


ProviderFactory = Callable[[EnvironmentSpec], Provider]


@dataclass(frozen=True)
class BuiltImage:
    """What a built image runs, read back from the backend: its entry script (path in the app folder), the
    model versions it packages, and ``copy(key, destination)`` that writes one of their files (keys as in
    ``PackagedModel.files``). ``copy`` may fetch lazily: a behaviour run found in the cache calls it never."""

    entry: str
    models: tuple[PackagedModel, ...]
    copy: Callable[[str, Path], None]


@runtime_checkable
class BuiltImageFiles(Protocol):
    """A provider that can hand out what a built image runs: the deployed side of a plan's behaviour diff
    (its own score.py, conda file and model files, not the repository's). Providers without it get a diff
    without the deployed side."""

    def built_image_files(self, name: str, label: str, destination: Path) -> BuiltImage | None:
        """Write the application image ``name:label`` was built with under ``destination`` as
        ``providers.layout`` lays it out (``app/...``, ``environment/conda.yaml``) and return what it runs;
        None when the image is unknown. ``PermanentProviderError`` (saying why) when the image exists but
        what it was built from cannot be read back."""
