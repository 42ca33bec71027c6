"""Stored rows -> the Snapshot the planner reads, normalised as ``model.state`` requires:
ownership keys turned into ``owner`` (and the spec name and fingerprint they carry) and
stripped from tags and labels, registry passwords redacted from deployment content."""

from __future__ import annotations

import hashlib
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


def files_fingerprint(files: Mapping[str, str]) -> str:
    """The fingerprint of a version's files (registered path -> SHA-256), as ``spec.fingerprints.tree_digest``
    computes it from the files themselves: paths relative to the registered folder, when it is one."""
    heads = {relative.partition("/")[0] for relative in files}
    folder = len(heads) == 1 and all("/" in relative for relative in files)
    sha = hashlib.sha256()
    for relative, digest in sorted((r.partition("/")[2] if folder else r, d) for r, d in files.items()):
        sha.update(f"{relative}\0{digest}\n".encode())
    return sha.hexdigest()


def model_version(row: ModelRow) -> ModelVersion:
    """A version registered by another tool has no fingerprint recorded: its files' digests give it."""
    fingerprint = row.fingerprint or files_fingerprint(row.files)
    return ModelVersion(name=row.name, version=row.version, fingerprint=fingerprint,
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
