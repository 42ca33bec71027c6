"""Snapshots as plain JSON, and the snapshot a perfect apply would leave.

``actual.json`` of a planner case (``tests/cases/plan/``) is ``dataclasses.asdict`` of a
``reconciler.model.state.Snapshot``: ``models``, ``images`` and ``deployments`` are lists of
objects with the dataclass fields as keys, ``registries`` maps a name to a registry object,
a deployment's ``health`` is ``null`` or an object, and its ``rollout`` an object (all ``null`` when no
rollout is in flight). Every field is listed; unknown or
missing keys are errors, so a typo in a hand-edited file fails loudly instead of being ignored.

Most cases start from what a perfect apply of their specs would leave, then edit it. Print
that state for an environment folder with

    .venv/bin/python -m tests.core.snapshot_json tests/cases/plan/<case>/env > tests/cases/plan/<case>/actual.json

(``--empty`` prints the state of a backend holding nothing but the registries).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from reconciler.core import planner
from reconciler.model.plan import DesiredDeployment
from reconciler.model.specs import DesiredState, Fingerprints
from reconciler.model.state import (
    DeploymentHealth,
    ImageVersion,
    LiveDeployment,
    LiveRegistry,
    ModelVersion,
    RolloutMark,
    Snapshot,
)

CREATED = "2026-01-01T00:00:00"  # the creation time of everything a converged snapshot holds

T = TypeVar("T")


def _check_keys(cls: type[Any], data: object, where: str) -> dict[str, Any]:
    """``data`` as an object with exactly the fields of ``cls``, defaulted ones included: a file
    that lists every field reads the same to people as to the planner."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown, missing = sorted(set(data) - names), sorted(names - set(data))
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing} ({cls.__name__})")
    return data


def _build(cls: type[T], data: object, where: str) -> T:
    """``cls(**data)``, refusing unknown and missing keys with the place they were found."""
    return cls(**_check_keys(cls, data, where))


def _items(data: dict[str, Any], key: str) -> list[Any]:
    items = data[key]
    if not isinstance(items, list):
        raise ValueError(f"{key}: expected a list")
    return items


def _deployment(data: object, where: str) -> LiveDeployment:
    deployment = _build(LiveDeployment, data, where)
    health: object = deployment.health
    if health is not None:
        built = _build(DeploymentHealth, health, f"{where}.health")
        built = dataclasses.replace(built, shadowed_by=tuple(built.shadowed_by))
        deployment = dataclasses.replace(deployment, health=built)
    mark: object = deployment.rollout
    return dataclasses.replace(deployment, rollout=_build(RolloutMark, mark, f"{where}.rollout"))


def snapshot_from_dict(data: dict[str, Any]) -> Snapshot:
    """The frozen ``Snapshot`` a JSON object describes (lists become tuples, as providers make them)."""
    data = _check_keys(Snapshot, data, "snapshot")
    registries = data["registries"]
    if not isinstance(registries, dict):
        raise ValueError("registries: expected an object")
    parts = {
        **data,
        "models": tuple(_build(ModelVersion, m, f"models[{i}]") for i, m in enumerate(_items(data, "models"))),
        "images": tuple(_build(ImageVersion, m, f"images[{i}]") for i, m in enumerate(_items(data, "images"))),
        "deployments": tuple(_deployment(d, f"deployments[{i}]")
                             for i, d in enumerate(_items(data, "deployments"))),
        "registries": {name: _build(LiveRegistry, r, f"registries.{name}")
                       for name, r in registries.items()},
    }
    snapshot = _build(Snapshot, parts, "snapshot")
    for name, registry in snapshot.registries.items():
        if registry.name != name:
            raise ValueError(f"registries.{name}: the registry is named {registry.name!r}")
    return snapshot


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    return dataclasses.asdict(snapshot)


def load_snapshot(path: Path) -> Snapshot:
    return snapshot_from_dict(json.loads(path.read_text(encoding="utf-8")))


def dump_snapshot(snapshot: Snapshot) -> str:
    """Readable, stable JSON: fields in dataclass order, two-space indent, a final newline."""
    return json.dumps(snapshot_to_dict(snapshot), indent=2, ensure_ascii=False) + "\n"


def empty_snapshot(environment: str = "local", registries: Sequence[str] = ("local",),
                   image_registry: str = "localhost") -> Snapshot:
    """A backend holding nothing but the named registries (local-backend addresses, version "1")."""
    return Snapshot(environment=environment, image_registry=image_registry, models=(), images=(), deployments=(),
                    registries={name: LiveRegistry(name, image_registry, f"{name}-pull", "1") for name in registries})


def live(deployment: DesiredDeployment, owner: str, created: str = CREATED) -> LiveDeployment:
    """The deployment as the hub holds it once ``deployment`` was applied."""
    return LiveDeployment(
        id=deployment.id, name=deployment.spec.name, owner=owner, content_hash=deployment.content_hash,
        content=deployment.content, target_condition=deployment.target_condition,
        priority=deployment.spec.priority, labels=deployment.spec.labels, metrics=deployment.metrics,
        layered=deployment.spec.layered, created=created)


def converged(desired: DesiredState, fingerprints: Fingerprints, base: Snapshot | None = None) -> Snapshot:
    """The snapshot a perfect apply of ``desired`` onto ``base`` (default: an empty backend with
    the environment's registries) would leave: version 1 of every model, one image per spec,
    one deployment per spec, all owned by the environment."""
    environment = desired.environment.name
    if base is None:
        base = empty_snapshot(environment, tuple(desired.environment.registries))
    images = planner.desired_images(desired, fingerprints, base.image_registry)
    promoted = planner.desired_promotions(desired, fingerprints, base.image_registry, {})  # copied, as if built
    deployments, _ = planner.desired_deployments(desired, {**images, **promoted}, base)
    return dataclasses.replace(
        base,
        models=tuple(ModelVersion(n, 1, fingerprints.models[n], m.description, m.tags, m.properties, environment)
                     for n, m in desired.models.items()),
        images=tuple(ImageVersion(n, i.label, i.fingerprint, i.reference, environment, CREATED)
                     for n, i in sorted({**images, **promoted}.items())),
        deployments=tuple(live(d, environment) for d in deployments.values()),
    )


def main(argv: Sequence[str] | None = None) -> int:
    from reconciler.spec.fingerprints import HashCache, compute_fingerprints
    from reconciler.spec.loader import load_environment

    parser = argparse.ArgumentParser(prog="python -m tests.core.snapshot_json", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("environment_dir", type=Path)
    parser.add_argument("--empty", action="store_true", help="an empty backend (its registries only)")
    arguments = parser.parse_args(argv)
    desired = load_environment(arguments.environment_dir)
    if arguments.empty:
        snapshot = empty_snapshot(desired.environment.name, tuple(desired.environment.registries))
    else:
        snapshot = converged(desired, compute_fingerprints(desired, HashCache()))
    sys.stdout.write(dump_snapshot(snapshot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
