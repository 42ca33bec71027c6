"""Where things go inside a scoring image: Azure ML's ``Model.package`` layout, written once.

Two writers share it, so that a model is scored locally exactly as the image would score it:

* the local backend's image build (``providers.local.images``) writes it into a Docker build
  context (``app/``, ``environment/``, ``models/``) that ``COPY`` steps put at ``/var/...``;
* the behaviour runs (``reconciler.behaviour``) write the same folders into a work folder
  and point Azure ML's inference server at them (``AML_APP_ROOT``, ``AZUREML_MODEL_DIR``).

Paths in the image are POSIX and absolute; ``model_dir`` and ``image_environment`` take the
root the models folder has where the server runs (the image's by default).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.model.specs import ImageSpec

APP_ROOT = "var/azureml-app"
MODELS_ROOT = f"{APP_ROOT}/azureml-models"
ENVIRONMENT_ROOT = "var/azureml-environment"

# The folders of a build context (or a behaviour work folder) and where each lands in the image.
APP, ENVIRONMENT, MODELS = "app", "environment", "models"
CONTEXT_TO_IMAGE = {ENVIRONMENT: ENVIRONMENT_ROOT, APP: APP_ROOT, MODELS: MODELS_ROOT}
CONDA_FILE = "conda.yaml"


WHOLE_VERSION = ""  # a ``PackagedModel.files`` path: one ``copy`` writes every file of the version


@dataclass(frozen=True)
class PackagedModel:
    """A registered model version to put in the image: relative path -> blob digest (or, for
    files not registered yet, any key the writer's ``copy`` understands). A backend that fetches a
    version's files at once (Azure ML's ``Model.download``) lists one path, ``WHOLE_VERSION``: its
    ``copy`` gets the version's folder as the destination."""

    name: str
    version: int
    files: dict[str, str]


def registered_files(path: Path) -> dict[str, Path]:
    """A model's files by the path Azure ML registers them under: relative to the parent of
    ``path``, so a registered folder keeps its name (``model/model.json``)."""
    if path.is_file():
        return {path.name: path}
    return {p.relative_to(path.parent).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()}


def model_dir(models: Sequence[PackagedModel], root: str = f"/{MODELS_ROOT}") -> str:
    """``AZUREML_MODEL_DIR`` as Azure ML sets it: the version folder of a single model,
    else the folder holding every ``<model>/<version>``."""
    if len(models) == 1:
        return f"{root}/{models[0].name}/{models[0].version}"
    return root


def app_files(spec: ImageSpec) -> tuple[dict[str, Path], str]:
    """The application files (path in the app folder -> source) and the entry script's path
    among them: the whole source directory, plus the entry script if it lies outside it."""
    files: dict[str, Path] = {}
    entry = spec.entry_script.name
    if spec.source_directory is not None:
        source = spec.source_directory
        files = {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*")) if p.is_file()}
        if spec.entry_script.resolve().is_relative_to(source.resolve()):
            entry = spec.entry_script.resolve().relative_to(source.resolve()).as_posix()
    files.setdefault(entry, spec.entry_script)
    return files, entry


def image_environment(entry: str, models: Sequence[PackagedModel], app_root: str = f"/{APP_ROOT}",
                      models_root: str = f"/{MODELS_ROOT}") -> dict[str, str]:
    """What Azure ML's inference server reads to find the entry script and the models."""
    return {"AML_APP_ROOT": app_root, "AZUREML_ENTRY_SCRIPT": entry,
            "AZUREML_MODEL_DIR": model_dir(models, models_root)}


def write_app(context: Path, spec: ImageSpec) -> str:
    """Write ``app/`` (source directory and entry script) and ``environment/conda.yaml`` under
    ``context``; return the entry script's path in the app folder."""
    files, entry = app_files(spec)
    for relative, source in files.items():
        target = context / APP / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (context / ENVIRONMENT).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec.conda_file, context / ENVIRONMENT / CONDA_FILE)
    return entry


def write_models(context: Path, models: Sequence[PackagedModel], copy: Callable[[str, Path], None]) -> None:
    """Write ``models/<model>/<version>/<file>`` under ``context``; ``copy(key, destination)``
    writes one file (the local backend copies a blob by digest)."""
    for model in models:
        for relative, key in sorted(model.files.items()):
            destination = context / MODELS / model.name / str(model.version) / relative
            (destination if relative == WHOLE_VERSION else destination.parent).mkdir(parents=True, exist_ok=True)
            copy(key, destination)
