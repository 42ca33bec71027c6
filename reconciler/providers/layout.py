"""Where things go inside a scoring image: Azure ML's ``Model.package`` layout, written once.

Three writers share it, so that a model is scored locally exactly as the image would score it,
and an image is built from the same bytes on every backend:

* the local backend's image build (``providers.local.images``) writes it into a Docker build
  context (``Dockerfile``, ``app/``, ``environment/``, ``models/``; ``write_context``) whose
  ``COPY`` steps put it at ``/var/...``;
* the Azure provider's ACR Tasks builder (``providers.azure.acr_tasks``) writes the same context
  and uploads it as one deterministic archive (``context_archive``);
* the behaviour runs (``reconciler.behaviour``) write the same folders into a work folder
  and point Azure ML's inference server at them (``AML_APP_ROOT``, ``AZUREML_MODEL_DIR``).

Paths in the image are POSIX and absolute; ``model_dir`` and ``image_environment`` take the
root the models folder has where the server runs (the image's by default).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.model.specs import ImageSpec

if TYPE_CHECKING:
    import tarfile  # imported where an archive is written: a plan imports this module and writes none

APP_ROOT = "var/azureml-app"
MODELS_ROOT = f"{APP_ROOT}/azureml-models"
ENVIRONMENT_ROOT = "var/azureml-environment"

# The folders of a build context (or a behaviour work folder) and where each lands in the image.
APP, ENVIRONMENT, MODELS = "app", "environment", "models"
CONTEXT_TO_IMAGE = {ENVIRONMENT: ENVIRONMENT_ROOT, APP: APP_ROOT, MODELS: MODELS_ROOT}
CONDA_FILE = "conda.yaml"
DOCKERFILE = "Dockerfile"

BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest"
CONDA_PREFIX = "/opt/scoring-env"
PORT = 5001
FIXED_MTIME = 0  # 1970-01-01: the same bytes whenever the inputs are the same


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


def image_tag(reference: str) -> str:
    """``contoso.azurecr.io/iris-scorer:3f2a`` -> ``iris-scorer:3f2a``: the image without its registry."""
    return reference.rsplit("/", 1)[-1]


def dockerfile(image: str, entry: str, models: Sequence[PackagedModel]) -> str:
    """The Dockerfile of a build context. ``image`` is ``<name>:<label>`` without the registry: the
    context is the same bytes whichever backend or registry builds it."""
    environment = " ".join(f"{key}={json.dumps(value)}" for key, value in image_environment(entry, models).items())
    return "\n".join([
        f"# {image}: generated by edge-reconciler. The same content as",
        "# Azure ML's Model.package: an inference base image, the conda environment, the",
        "# application and the registered models under AZUREML_MODEL_DIR.",
        f"FROM {BASE_IMAGE}",
        "USER root",
        f"COPY {ENVIRONMENT}/ /{ENVIRONMENT_ROOT}/",
        f"RUN conda env create --prefix {CONDA_PREFIX} --file /{ENVIRONMENT_ROOT}/{CONDA_FILE} \\",
        "    && conda clean --all --yes",
        f"ENV PATH={CONDA_PREFIX}/bin:$PATH AZUREML_CONDA_ENVIRONMENT_PATH={CONDA_PREFIX}",
        f"COPY {APP}/ /{APP_ROOT}/",
        f"COPY {MODELS}/ /{MODELS_ROOT}/",
        f"ENV {environment}",
        "USER dockeruser",
        f"EXPOSE {PORT}",
        "",
    ])


def write_context(context: Path, spec: ImageSpec, image: str, models: Sequence[PackagedModel],
                  copy: Callable[[str, Path], None]) -> str:
    """Write the whole Docker build context of ``image`` (``<name>:<label>``) under ``context``:
    ``app/``, ``environment/``, ``models/`` (each file written by ``copy(key, destination)``) and the
    ``Dockerfile``. Return the entry script's path in the app folder."""
    entry = write_app(context, spec)
    write_models(context, models, copy)
    (context / DOCKERFILE).write_text(dockerfile(image, entry, models), encoding="utf-8")
    return entry


def tar_info(name: str, source: Path | None) -> tarfile.TarInfo:
    """A tar entry that depends only on the file's path, size and executable bit: fixed mtime,
    owner root (0:0). ``source`` None is a folder."""
    import tarfile

    info = tarfile.TarInfo(name if source is not None else f"{name}/")
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if source is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = source.stat().st_size
        info.mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
    return info


def context_entries(context: Path) -> list[tuple[str, Path | None]]:
    """Every file and folder of a build context, sorted by its POSIX path in the context."""
    found = [(path.relative_to(context).as_posix(), None if path.is_dir() else path) for path in context.rglob("*")]
    return sorted(found)


def context_archive(context: Path) -> bytes:
    """The build context as a gzip tar whose bytes depend only on the files' paths, contents and
    executable bits (sorted entries, fixed mtimes and owners, no gzip name or time): what a remote
    builder is sent."""
    import gzip
    import tarfile

    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=FIXED_MTIME, compresslevel=6) as zipped, \
            tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        add_entries(tar, context_entries(context))
    return raw.getvalue()


def add_entries(tar: tarfile.TarFile, entries: Iterable[tuple[str, Path | None]],
                on_bytes: Callable[[int], None] | None = None) -> None:
    """Add ``(name, file or None for a folder)`` entries to ``tar`` with ``tar_info``'s fixed metadata; ``on_bytes``
    is told each file's size once it is in."""
    for name, source in entries:
        info = tar_info(name, source)
        if source is None:
            tar.addfile(info)
            continue
        with source.open("rb") as stream:
            tar.addfile(info, stream)
        if on_bytes is not None:
            on_bytes(info.size)
