"""Desired state: the typed form of the spec documents, after validation.

Paths are absolute and already checked to lie inside the repository. Mappings are plain
dicts (JSON-like values) and must be treated as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from reconciler.model.behaviour import Gates, SamplesSpec
from reconciler.model.diagnostics import SourceLocation

JSON = Any
"""A JSON-compatible value (dict, list, str, int, float, bool or None)."""


class Kind(str, Enum):
    """Resource kinds, in dependency order: models, then images, then deployments."""

    MODEL = "Model"
    IMAGE = "Image"
    DEPLOYMENT = "Deployment"

    @property
    def order(self) -> int:
        return _KIND_ORDER[self]  # plans sort thousands of keys: not list(Kind).index each time

    @property
    def label(self) -> str:
        return self.value.lower()


_KIND_ORDER = {kind: index for index, kind in enumerate(Kind)}


@dataclass(frozen=True)
class ResourceKey:
    """Identity of a resource in plans and state: its kind and its spec name.

    Keys sort in dependency order (models, images, deployments), then by name.
    """

    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.label}/{self.name}"

    def __lt__(self, other: ResourceKey) -> bool:
        return (self.kind.order, self.name) < (other.kind.order, other.name)


@dataclass(frozen=True)
class RegisteredSource:
    """``spec.source.registered``: a model version registered outside the specs (by a training pipeline,
    or by another environment). The reconciler never registers, changes or deletes it: images package it
    as it is. ``location`` is that of the ``registered`` field (for "no such version")."""

    name: str
    version: int
    location: SourceLocation

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class UriSource:
    """``spec.source.uri``: one model file the backend reads from a URI, with its content digest pinned
    (``sha256:<hex>``), so a plan is exact without reading it. ``digest_location`` is that of the
    ``digest`` field (for "the content does not match")."""

    uri: str
    digest: str  # "sha256:<64 hex>"
    location: SourceLocation
    digest_location: SourceLocation

    @property
    def sha256(self) -> str:
        return self.digest.partition(":")[2]

    @property
    def file_name(self) -> str:
        """The name the file is registered under: the URI's last path segment."""
        return unquote(urlsplit(self.uri).path.rstrip("/").rpartition("/")[2]) or "model"


ModelSource = RegisteredSource | UriSource


@dataclass(frozen=True)
class ModelSpec:
    """A model to register (Azure ML ``Model.register``): files under ``path`` in the repository, or a
    ``source`` outside it (exactly one of the two)."""

    name: str
    path: Path | None  # a file or a folder; None when ``source`` names the content
    description: str
    tags: dict[str, str]
    properties: dict[str, str]
    location: SourceLocation
    source: ModelSource | None = None

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(Kind.MODEL, self.name)

    @property
    def registered(self) -> RegisteredSource | None:
        return self.source if isinstance(self.source, RegisteredSource) else None

    @property
    def uri(self) -> UriSource | None:
        return self.source if isinstance(self.source, UriSource) else None


@dataclass(frozen=True)
class ImageSpec:
    """A scoring image (Azure ML ``Model.package`` with an ``InferenceConfig``)."""

    name: str
    runtime: str
    entry_script: Path
    conda_file: Path
    source_directory: Path | None
    models: tuple[str, ...]
    description: str
    tags: dict[str, str]
    location: SourceLocation
    samples: SamplesSpec | None = None  # behaviour samples (not part of the image: no new version)
    gates: Gates = Gates()

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(Kind.IMAGE, self.name)


@dataclass(frozen=True)
class PromotedImageSpec:
    """An image this environment does not build: the image ``source_image`` of the environment in
    ``source_directory`` (``spec.promoteFrom``), copied into this environment's registry by digest.

    ``source`` is that environment's desired state, loaded with this one (its specs say which
    fingerprint, hence which label, is promoted); the digest comes from its backend at plan time."""

    name: str
    source_environment: str  # the folder name, as written in promoteFrom.environment
    source_image: str
    source_directory: Path
    source: DesiredState
    description: str
    tags: dict[str, str]
    location: SourceLocation

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(Kind.IMAGE, self.name)


@dataclass(frozen=True)
class ModuleSpec:
    """One custom module of an edge deployment."""

    name: str
    image: str  # an Image spec name, or a full external reference (contains "/" or ":")
    create_options: dict[str, JSON]
    env: dict[str, JSON]
    restart_policy: str
    status: str
    startup_order: int | None
    image_pull_policy: str | None
    desired_properties: dict[str, JSON]

    @property
    def image_is_external(self) -> bool:
        return "/" in self.image or ":" in self.image


@dataclass(frozen=True)
class RingSpec:
    """One ring of a staged rollout: the devices of ``spec.targetCondition AND target_condition``
    run the new content for at least ``soak_seconds`` before the next ring gets it."""

    name: str
    target_condition: str
    soak_seconds: int
    soak: str  # as written ("30m"), for messages


@dataclass(frozen=True)
class MetricGate:
    """Bounds on a custom metric of the deployment (a device count); ``None`` is no bound."""

    max: int | None = None
    min: int | None = None


@dataclass(frozen=True)
class GateSpec:
    """What a ring must show before the rollout moves on (see ``core.rollout``)."""

    min_success_percent: float | None = None  # reportedSuccessfulCount / targetedCount
    max_failed_devices: int | None = None
    metrics: dict[str, MetricGate] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutSpec:
    """A staged rollout of new content: rings in order, then the whole target condition."""

    rings: tuple[RingSpec, ...]
    gates: GateSpec
    on_failure: str  # "rollback" | "pause"


@dataclass(frozen=True)
class DeploymentSpec:
    """An IoT Edge deployment (an IoT Hub configuration with ``modulesContent``)."""

    name: str
    target_condition: str | None
    device_ids: tuple[str, ...]
    priority: int
    layered: bool
    registry: str | None
    modules: tuple[ModuleSpec, ...]
    routes: dict[str, JSON]
    edge_agent: dict[str, JSON]
    edge_hub: dict[str, JSON]
    labels: dict[str, str]
    metrics: dict[str, str]
    description: str
    location: SourceLocation
    rollout: RolloutSpec | None = None  # None: new content reaches every targeted device at once
    adopt: str | None = None  # the id of an unmanaged deployment this spec takes over (``reconciler import``)
    create_options_key_order: str = "sorted"  # "sorted" | "asWritten": the bytes of the createOptions strings

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(Kind.DEPLOYMENT, self.name)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from at run time. Never the secret itself."""

    from_env: str

    def __str__(self) -> str:
        return f"$env:{self.from_env}"


@dataclass(frozen=True)
class RegistrySpec:
    """A container registry devices pull from, named so deployments can refer to it."""

    name: str
    settings: dict[str, JSON]  # provider-specific (e.g. ACR name, credential mode)


@dataclass(frozen=True)
class EnvironmentSpec:
    """Which backend an environment uses and its settings (``environment.yaml``)."""

    name: str
    provider: str
    settings: dict[str, JSON]  # the provider's own block (``spec.local`` / ``spec.azure``)
    registries: dict[str, RegistrySpec]
    directory: Path  # the environment folder
    repository_root: Path
    location: SourceLocation


@dataclass(frozen=True)
class DesiredState:
    """Everything one environment folder declares, keyed by spec name."""

    environment: EnvironmentSpec
    models: dict[str, ModelSpec]
    images: dict[str, ImageSpec]
    deployments: dict[str, DeploymentSpec]
    promotions: dict[str, PromotedImageSpec] = field(default_factory=dict)  # images copied from another environment

    @property
    def image_names(self) -> set[str]:
        """Every Image spec's name: built here or promoted."""
        return set(self.images) | set(self.promotions)


@dataclass(frozen=True)
class Fingerprints:
    """Content digests of the desired models and images (SHA-256, hex), by spec name."""

    models: dict[str, str]
    images: dict[str, str]
