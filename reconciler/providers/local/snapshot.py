"""Stored rows -> the Snapshot the planner reads, normalised as ``model.state`` requires:
ownership keys turned into ``owner`` (and the spec name and fingerprint they carry) and
stripped from tags and labels, registry passwords redacted from deployment content."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.hub.manifest import redact_passwords
from reconciler.model import ownership
from reconciler.model.specs import RegistrySpec
from reconciler.model.state import (
    DeploymentHealth,
    ImageVersion,
    LiveDeployment,
    LiveRegistry,
    ModelVersion,
    RolloutMark,
    Snapshot,
)
from reconciler.providers.local import secrets
from reconciler.providers.local.rows import DeploymentRow, ImageRow, ModelRow, RegistryRow

IMAGE_REGISTRY = "localhost"


def model_version(row: ModelRow) -> ModelVersion:
    return ModelVersion(name=row.name, version=row.version, fingerprint=row.fingerprint,
                        description=row.description, tags=ownership.user_tags(row.tags),
                        properties=row.properties, owner=ownership.owner_of(row.tags))


def image_version(row: ImageRow) -> ImageVersion:
    return ImageVersion(name=row.name, label=row.label, fingerprint=row.fingerprint, reference=row.reference,
                        owner=ownership.owner_of(row.tags), created=row.created)


def live_deployment(row: DeploymentRow, health: DeploymentHealth | None = None) -> LiveDeployment:
    owner = ownership.owner_of(row.labels)
    return LiveDeployment(
        id=row.id,
        name=row.labels.get(ownership.NAME, row.id) if owner else row.id,
        owner=owner,
        content_hash=row.labels.get(ownership.FINGERPRINT) if owner else None,
        content=redact_passwords(row.content),
        target_condition=row.target_condition,
        priority=row.priority,
        labels=ownership.user_tags(row.labels),
        metrics=row.metrics,
        layered=row.layered,
        created=row.created,
        health=health,
        rollout=ownership.rollout_mark(row.labels) if owner else RolloutMark(),
    )


def live_registries(declared: Mapping[str, RegistrySpec], rows: dict[str, RegistryRow]) -> dict[str, LiveRegistry]:
    """Every registry the environment declares, as it is or will be once first used."""
    return {name: LiveRegistry(name=name, address=secrets.ADDRESS, username=secrets.username(name),
                               credential_version=rows[name].credential_version if name in rows
                               else secrets.FIRST_VERSION)
            for name in sorted(declared)}


def build(environment: str, models: Iterable[ModelRow], images: Iterable[ImageRow],
          deployments: Iterable[DeploymentRow], registries: dict[str, LiveRegistry],
          health: Mapping[str, DeploymentHealth] | None = None) -> Snapshot:
    health = health or {}
    return Snapshot(
        environment=environment,
        image_registry=IMAGE_REGISTRY,
        models=tuple(model_version(row) for row in models),
        images=tuple(image_version(row) for row in images),
        deployments=tuple(live_deployment(row, health.get(row.id)) for row in deployments),
        registries=registries,
    )
