"""Lineage, from a snapshot: model version -> images that package it -> deployments that run them.

Pure: the engine reads the snapshot, what each image packages (``packaged``: (image name, label) ->
{model name: version}) and the devices; this module only joins them. A deployment runs an image when one
of its modules (base or layered content, as ``hub.manifest.module_images`` reads them) names the image's
reference exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.core.planner import desired_images
from reconciler.errors import ReconcilerError
from reconciler.hub.manifest import module_images
from reconciler.model.lineage import ImageLineage, Lineage, Reach
from reconciler.model.specs import DesiredState, Fingerprints
from reconciler.model.state import ImageVersion, LiveDeployment, Snapshot

Packaged = Mapping[tuple[str, str], Mapping[str, int]]


def parse_target(kind: str, text: str) -> tuple[str, str | None]:
    """``NAME[:VERSION]`` (a model version is a number) or ``NAME[:LABEL]``."""
    name, colon, version = text.partition(":")
    if not name or (colon and not version):
        raise ReconcilerError(f"expected {kind.upper()}_NAME or NAME:{'VERSION' if kind == 'model' else 'LABEL'}, "
                              f"got {text!r}")
    if kind == "model" and colon and not version.isdigit():
        raise ReconcilerError(f"a model version is a number: {text!r}")
    return name, version if colon else None


def running(image: ImageVersion, deployments: tuple[LiveDeployment, ...]) -> tuple[Reach, ...]:
    """The deployments with a module that runs ``image``, by id."""
    found = []
    for deployment in sorted(deployments, key=lambda d: d.id):
        modules = tuple(name for name, reference in module_images(deployment.content).items()
                        if reference == image.reference)
        if modules:
            found.append(Reach(deployment.id, deployment.name, deployment.owner is not None, modules,
                               deployment.target_condition, deployment.priority, deployment.layered,
                               deployment.is_candidate))
    return tuple(found)


def _image(image: ImageVersion, snapshot: Snapshot, packaged: Packaged) -> ImageLineage:
    models = packaged.get((image.name, image.label))
    return ImageLineage(image.name, image.label, image.reference, image.created,
                        dict(models) if models is not None else None, running(image, snapshot.deployments))


def trace_model(snapshot: Snapshot, packaged: Packaged, name: str, version: int | None,
                may_package: frozenset[str] = frozenset()) -> Lineage:
    """Every image that packages model ``name`` (at ``version``, or any version), newest build first.
    ``may_package`` names the images whose specs use the model: those of them whose contents are not
    known are listed as unknown. Raises ``ReconcilerError`` when there is no such model version."""
    versions = sorted(m.version for m in snapshot.models if m.name == name)
    if not versions:
        raise ReconcilerError(f"model {name}: no version of it in environment {snapshot.environment}")
    if version is not None and version not in versions:
        known = ", ".join(map(str, versions)) or "none"
        raise ReconcilerError(f"model {name}:{version}: no such version in environment {snapshot.environment} "
                              f"(versions: {known})")
    wanted = set(versions) if version is None else {version}
    images, unknown = [], []
    for image in sorted(snapshot.images, key=lambda i: (i.created, i.label), reverse=True):
        models = packaged.get((image.name, image.label))
        if models is None:
            if image.name in may_package:
                unknown.append(image.reference)
        elif models.get(name) in wanted:
            images.append(_image(image, snapshot, packaged))
    return Lineage(snapshot.environment, "model", name, None if version is None else str(version),
                   tuple((name, v) for v in sorted(wanted)), tuple(images), tuple(unknown))


def trace_image(snapshot: Snapshot, packaged: Packaged, name: str, label: str | None) -> Lineage:
    """Every built image ``name`` (with ``label``, or any label), newest build first. Raises
    ``ReconcilerError`` when there is none."""
    found = [i for i in snapshot.images if i.name == name and (label is None or i.label == label)]
    if not found:
        labels = sorted(i.label for i in snapshot.images if i.name == name)
        what = f"image {name}:{label}" if label else f"image {name}"
        known = f" (labels: {', '.join(labels)})" if labels else ""
        raise ReconcilerError(f"{what}: not built in environment {snapshot.environment}{known}")
    found.sort(key=lambda i: (i.created, i.label), reverse=True)
    return Lineage(snapshot.environment, "image", name, label, (),
                   tuple(_image(i, snapshot, packaged) for i in found))


def packaged_by_specs(desired: DesiredState, fingerprints: Fingerprints, snapshot: Snapshot) -> dict[
        tuple[str, str], dict[str, int]]:
    """What the images the specs describe now package, for backends whose images record nothing: the
    label stands for these model files, and the apply path packages the newest version of each model this
    environment registered with those files. Older labels stay unknown."""
    packaged = {}
    for image in desired_images(desired, fingerprints, snapshot.image_registry).values():
        models = {}
        for model, fingerprint in image.model_fingerprints.items():
            versions = [m.version for m in snapshot.models if m.name == model and m.fingerprint == fingerprint
                        and m.owner == snapshot.environment]
            if versions:
                models[model] = max(versions)
        if len(models) == len(image.model_fingerprints):
            packaged[(image.spec.name, image.label)] = models
    return packaged
