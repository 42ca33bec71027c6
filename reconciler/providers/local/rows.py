"""What the local backend stores, one dataclass per table.

Rows hold raw values as the backend keeps them: tags and labels still carry the ownership
keys (``model.ownership``), exactly as Azure keeps them. ``snapshot`` strips them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.hub.precedence import Rank
from reconciler.model.specs import JSON


@dataclass(frozen=True)
class ModelRow:
    """A registered model version. ``files`` maps relative path -> blob digest (empty when read without
    them: ``Store.models(files=False)``)."""

    name: str
    version: int
    fingerprint: str | None
    description: str
    tags: dict[str, str]
    properties: dict[str, str]
    owner: str | None
    files: dict[str, str]
    created: str


@dataclass(frozen=True)
class ImageRow:
    """A built image. ``models`` maps model name -> the packaged version; ``digest`` is the
    OCI manifest's digest."""

    name: str
    label: str
    fingerprint: str | None
    reference: str
    owner: str | None
    created: str
    models: dict[str, int]
    digest: str
    tags: dict[str, str]


@dataclass(frozen=True)
class DeploymentRow:
    """An IoT Hub configuration. ``content`` holds registry password placeholders, never
    passwords. ``seq`` orders creations that share a timestamp."""

    id: str
    name: str
    owner: str | None
    content_hash: str | None
    content: dict[str, JSON]
    target_condition: str
    priority: int
    labels: dict[str, str]
    metrics: dict[str, str]
    layered: bool
    created: str
    seq: int

    @property
    def rank(self) -> Rank:
        """IoT Hub's order between deployments (``hub.precedence``)."""
        return Rank(self.priority, self.created, self.seq)


@dataclass(frozen=True)
class RegistryRow:
    """A registry's public half. The password is in ``secrets/``, never here."""

    name: str
    username: str
    credential_version: str
    created: str


@dataclass(frozen=True)
class DeviceRow:
    """A simulated edge device: its twin tags and reported properties, and the status it reports
    for modules (module name -> "applied", "success" or "failed"; unset: success)."""

    id: str
    tags: dict[str, Any]
    reported: dict[str, Any]
    failing: bool
    modules: dict[str, str] = field(default_factory=dict)

    @property
    def twin(self) -> dict[str, Any]:
        """What target conditions are evaluated on."""
        return {"deviceId": self.id, "tags": self.tags, "properties": {"reported": self.reported}}
