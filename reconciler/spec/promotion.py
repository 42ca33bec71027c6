"""Build once, promote: Image specs that name an image of another environment (``spec.promoteFrom``).

``promoteFrom.environment`` names a sibling folder of the environment's folder (``dev`` beside
``environments/prod`` is ``environments/dev``). That environment is loaded with this one, so that a
promotion is checked like any reference: the folder must be an environment of the same provider
with an Image of that name, and a chain of promotions (prod from staging from dev) must not loop.
Its specs say which fingerprint, hence which label, is promoted (``fingerprints``); which digest it
has is read from its backend when a plan is made (the engine), never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import SpecError
from reconciler.model.diagnostics import Diagnostic, SourceLocation
from reconciler.model.specs import DesiredState, EnvironmentSpec, PromotedImageSpec
from reconciler.spec.paths import display_path
from reconciler.spec.schemas import dotted, subject_of

if TYPE_CHECKING:
    from reconciler.spec.loader import Located

ENVIRONMENT_FIELD = ("spec", "promoteFrom", "environment")
IMAGE_FIELD = ("spec", "promoteFrom", "image")


@dataclass(frozen=True)
class PromotionRequest:
    """An Image document with ``promoteFrom``, before its source environment is loaded."""

    name: str
    source_environment: str
    source_image: str
    source_directory: Path
    description: str
    tags: dict[str, str]
    location: SourceLocation


def _at(item: Located, field: tuple[str, ...], message: str) -> Diagnostic:
    return Diagnostic(item.document.location(field), subject_of(item.document.data), dotted(field), message)


def resolve(environment: EnvironmentSpec, requests: Sequence[Located],
            chain: tuple[Path, ...]) -> tuple[dict[str, PromotedImageSpec], list[Diagnostic]]:
    """Load the source environment of each request (once per folder) and check the promotion.
    ``chain``: the folders being loaded, this one last (a source among them is a cycle)."""
    from reconciler.spec.loader import ENVIRONMENT_FILE, load_environment

    loaded: dict[Path, DesiredState | None] = {}
    resolved: dict[str, PromotedImageSpec] = {}
    problems: list[Diagnostic] = []
    for item in requests:
        request: PromotionRequest = item.spec
        folder = request.source_directory.resolve()
        shown = display_path(request.source_directory)
        name = request.source_environment
        if folder in chain:
            loop = " -> ".join(path.name for path in (*chain[chain.index(folder):], folder))
            problems.append(_at(item, ENVIRONMENT_FIELD, f"environment {name!r} promotes from this one: the "
                                                         f"promotions go round in a circle ({loop})"))
            continue
        if not (folder / ENVIRONMENT_FILE).is_file():
            problems.append(_at(item, ENVIRONMENT_FIELD, f"no environment {name!r}: {shown} has no "
                                                         f"{ENVIRONMENT_FILE} (promoteFrom.environment names a "
                                                         "sibling folder of this environment's folder)"))
            continue
        if folder not in loaded:
            try:
                loaded[folder] = load_environment(folder, promoting=chain)
            except SpecError as error:
                loaded[folder] = None
                problems.extend(error.diagnostics)
        source = loaded[folder]
        if source is None:
            problems.append(_at(item, ENVIRONMENT_FIELD, f"environment {name!r} ({shown}) has problems, listed "
                                                         "with its files: fix them first"))
            continue
        if source.environment.provider != environment.provider:
            problems.append(_at(item, ENVIRONMENT_FIELD, (
                f"environment {name!r} uses the {source.environment.provider!r} provider and this one "
                f"{environment.provider!r}: images are promoted between environments of the same provider")))
            continue
        if source.environment.name == environment.name:
            problems.append(_at(item, ENVIRONMENT_FIELD, (
                f"environment {name!r} has the same name as this one ({environment.name!r}, its "
                "metadata.name): ownership marks could not tell their resources apart")))
            continue
        if request.source_image not in source.image_names:
            known = ", ".join(sorted(source.image_names)) or "none"
            problems.append(_at(item, IMAGE_FIELD, f"environment {name!r} has no Image named "
                                                   f"{request.source_image!r} (defined: {known})"))
            continue
        resolved[request.name] = PromotedImageSpec(
            name=request.name, source_environment=name, source_image=request.source_image,
            source_directory=folder, source=source, description=request.description, tags=request.tags,
            location=request.location)
    return resolved, problems
