"""Actual state: a snapshot of what a backend holds, as providers report it.

Providers normalise before they report: ownership keys are stripped from tags and labels
(and turned into ``owner``), server-set fields (etags, timestamps other than creation
order) are left out, and secrets are redacted. The planner compares these values with the
desired state field by field, so anything left in here shows up in plans.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from reconciler.model.specs import JSON


def _plain(value: Any) -> Any:
    """JSON for ``Snapshot.fingerprint``: a dataclass as the mapping ``dataclasses.asdict`` gives (without
    its deep copy: 20 times faster on a full hub), rollout health left out, and an empty rollout mark
    too (so fingerprints did not change when rollouts came); anything else as text."""
    names = _FIELD_NAMES.get(type(value))
    if names is None:
        if not is_dataclass(value) or isinstance(value, type):
            return str(value)
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in fields(value))
    if isinstance(value, LiveDeployment):
        return {name: getattr(value, name) for name in names
                if name != "health" and not (name == "rollout" and not value.rollout.touched)}
    return {name: getattr(value, name) for name in names}


# The field names of each dataclass ``_plain`` met (``dataclasses.fields`` builds a new tuple each call:
# 2,600 calls in a no-op plan of the benchmark environment).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    fingerprint: str | None  # SHA-256 of the model files, from the ownership property
    description: str
    tags: dict[str, str]
    properties: dict[str, str]
    owner: str | None  # the owning environment; None when not created by the reconciler


@dataclass(frozen=True)
class ImageVersion:
    """One built (immutable) image in the workspace registry."""

    name: str
    label: str
    fingerprint: str | None
    reference: str  # e.g. "myacr.azurecr.io/iris-scorer:3f2a9c1d0b7e"
    owner: str | None
    created: str  # ISO 8601 build time: the newest build is the "current" one


@dataclass(frozen=True)
class PromotionSource:
    """The image a promotion copies (``spec.promoteFrom``), as the source environment's backend holds it.

    Read by the engine from the source environment for the label that environment's specs give; the
    planner promotes only a build that exists there (``digest`` set). ``locator`` is where the target
    backend copies it from (provider-specific: an ACR resource id, a local state folder); it is never
    shown, and is not part of what a plan compares."""

    environment: str  # the source environment's name (metadata.name)
    image: str  # its Image spec name (the repository there)
    label: str
    digest: str | None  # the manifest digest ("sha256:..."); None: that environment has not built this label
    reference: str  # "<its registry>/<image>:<label>"
    locator: str = field(default="", compare=False)


@dataclass(frozen=True)
class DeploymentHealth:
    """Rollout figures of a deployment, as IoT Hub's system metrics report them."""

    targeted: int
    applied: int
    succeeded: int
    failed: int
    shadowed_by: tuple[str, ...] = ()  # ids of higher-priority deployments that win on targeted devices
    metrics: dict[str, int] = field(default_factory=dict)  # custom metric results (device counts)


@dataclass(frozen=True)
class RolloutMark:
    """A staged rollout's state as the hub keeps it, in the deployment's labels (``ownership.ROLLOUT_*``).

    On a *candidate* (new content on its way through the rings): ``ring`` and ``since``, and
    ``paused`` (the gate that failed) once it is held by ``onFailure: pause``. On the *stable*
    version: ``failed``, the content hash of a candidate that failed and was rolled back, with
    the ring and the gate, so the same content is not tried again."""

    ring: str | None = None
    since: str | None = None
    paused: str | None = None
    failed: str | None = None
    failed_ring: str | None = None
    failed_gate: str | None = None

    @property
    def is_candidate(self) -> bool:
        return self.ring is not None

    @property
    def touched(self) -> bool:
        """Whether any rollout label is set."""
        return self != RolloutMark()


@dataclass(frozen=True)
class LiveDeployment:
    """An edge deployment as it exists in the hub."""

    id: str
    name: str  # the spec name for owned deployments; the id for unmanaged ones
    owner: str | None
    content_hash: str | None
    content: dict[str, JSON]  # modulesContent, passwords redacted
    target_condition: str
    priority: int
    labels: dict[str, str]  # user labels, ownership keys stripped
    metrics: dict[str, str]
    layered: bool
    created: str  # ISO 8601 creation time: IoT Hub breaks priority ties with it
    health: DeploymentHealth | None = field(default=None, compare=False)
    rollout: RolloutMark = field(default_factory=RolloutMark)  # from the rollout labels

    @property
    def is_candidate(self) -> bool:
        return self.rollout.is_candidate


@dataclass(frozen=True)
class LiveRegistry:
    """A container registry devices pull from. Never holds the password."""

    name: str
    address: str
    username: str
    credential_version: str  # changes when the password is rotated; a rotation replaces deployments


@dataclass(frozen=True)
class Snapshot:
    """Everything the planner needs to know about one environment's backend."""

    environment: str
    image_registry: str  # where images are pushed: "localhost" or "<acr>.azurecr.io"
    models: tuple[ModelVersion, ...]
    images: tuple[ImageVersion, ...]
    deployments: tuple[LiveDeployment, ...]
    registries: dict[str, LiveRegistry]

    def fingerprint(self) -> str:
        """A digest of the state a plan depends on. Rollout health is left out: it moves
        on its own and does not change what a plan would do."""
        canonical = json.dumps(self, sort_keys=True, separators=(",", ":"), default=_plain)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class SimulatedDevice:
    """A device of the local backend's simulator."""

    id: str
    tags: dict[str, JSON]
    failing: bool  # reports failure for what it applies
    reported: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceModules:
    """What a device runs: module name -> (id of the deployment it comes from, image)."""

    device: SimulatedDevice
    modules: dict[str, tuple[str, str]]
    statuses: dict[str, str] = field(default_factory=dict)  # module name -> "applied", "success" or "failed"
