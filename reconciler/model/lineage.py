"""Lineage (``reconciler where``): which images package a model version, which deployments run those
images, and which devices those deployments reach."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reach:
    """A deployment that runs an image, and the devices its target condition selects now.

    ``devices`` counts the IoT Edge devices the condition selects (IoT Hub's ``targetedCount``): a device
    that a higher-priority base deployment wins runs that one's modules instead. ``device_ids`` is None
    unless the devices were asked for (``--devices``)."""

    id: str
    name: str
    managed: bool  # created by this environment; False for the hub's other deployments
    modules: tuple[str, ...]  # the modules that run the image
    target_condition: str
    priority: int
    layered: bool
    candidate: bool  # new content on its way through a staged rollout's rings
    devices: int = 0
    device_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ImageLineage:
    """A built image, what it packages (model name -> version; None when the backend does not record it),
    and the deployments that run it."""

    name: str
    label: str
    reference: str
    created: str
    models: dict[str, int] | None
    deployments: tuple[Reach, ...]


@dataclass(frozen=True)
class Lineage:
    """The answer to ``reconciler where ENV_DIR model NAME[:VERSION]`` or ``image NAME[:LABEL]``.

    ``models`` are the model versions asked about (every version of the model when none was given; empty
    for an image). ``unknown`` lists images that may package the model but whose contents the backend does
    not record (Azure keeps nothing on an image but its tag: only the build the specs describe now is
    known), so a reader never mistakes "not known" for "not packaged"."""

    environment: str
    kind: str  # "model" or "image"
    name: str
    version: str | None  # the model version or image label asked for
    models: tuple[tuple[str, int], ...]
    images: tuple[ImageLineage, ...]
    unknown: tuple[str, ...] = ()
