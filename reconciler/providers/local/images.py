"""Image builds: what Azure ML's ``Model.package`` produces, written to disk.

A build of ``<name>:<label>`` writes, under ``images/<name>/<label>/``:

* ``context/``: a Docker build context (``Dockerfile`` on an Azure ML inference base image,
  ``environment/conda.yaml``, ``app/`` with the source directory and entry script, and
  ``models/<model>/<version>/...`` with the registered files: ``providers.layout``, which the
  behaviour runs share). ``docker build context/``
  makes the runnable image on a machine with Docker and network access.
* ``oci/``: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/``) holding
  the application layer the ``COPY`` steps add, as one gzip tar, with its config and
  manifest. The base image's layers are not fetched (no network); the manifest names the
  base in the standard ``org.opencontainers.image.base.name`` annotation.

Builds are deterministic (sorted entries, fixed mtimes, owners and gzip header), so the
same inputs give the same manifest digest. A build is written to a temporary folder and
renamed into place, so an interrupted build leaves nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from reconciler.model.specs import ImageSpec
from reconciler.providers import layout
from reconciler.providers.base import Progress
from reconciler.providers.layout import (
    APP,
    APP_ROOT,
    BASE_IMAGE,
    CONTEXT_TO_IMAGE,
    FIXED_MTIME,
    PORT,
    PackagedModel,
    add_entries,
    image_environment,
)
from reconciler.providers.local.blobs import BlobStore

if TYPE_CHECKING:
    import gzip

    from typing_extensions import Buffer  # typing-only: Python 3.12 has collections.abc.Buffer

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def write_context(context: Path, spec: ImageSpec, reference: str, models: Sequence[PackagedModel],
                  blobs: BlobStore) -> str:
    """Write the Docker build context (``providers.layout.write_context``, the model files from the
    blob store); return the entry script's path in the app folder."""
    return layout.write_context(context, spec, layout.image_tag(reference), models, blobs.copy_to)


def layer_entries(context: Path) -> list[tuple[str, Path | None]]:
    """The layer's entries, sorted: (path in the image, source file or None for a folder)."""
    files: dict[str, Path] = {}
    for folder, destination in CONTEXT_TO_IMAGE.items():
        root = context / folder
        for path in root.rglob("*"):
            if path.is_file():
                files[f"{destination}/{path.relative_to(root).as_posix()}"] = path
    folders = {str(parent) for name in files for parent in PurePosixPath(name).parents if str(parent) != "."}
    entries: dict[str, Path | None] = {**dict.fromkeys(folders), **files}
    return sorted(entries.items())


class _Digesting(io.BufferedIOBase):
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, target: BinaryIO | gzip.GzipFile):
        super().__init__()
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer, /) -> int:
        self.sha.update(data)
        self.size += memoryview(data).nbytes
        return self.target.write(data)


def write_layer(context: Path, blobs_dir: Path, on_bytes: Callable[[int], None]) -> tuple[str, str, int]:
    """Write the application layer into ``blobs_dir``; return (diff id, digest, size):
    the digests of the uncompressed tar and of the gzip blob."""
    import gzip  # here: every local plan imports this module, only builds write layers
    import tarfile

    partial = blobs_dir / ".layer"
    with partial.open("wb") as raw:
        compressed = _Digesting(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=FIXED_MTIME,
                           compresslevel=6) as zipped:
            uncompressed = _Digesting(zipped)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                add_entries(tar, layer_entries(context), on_bytes)
    digest = compressed.sha.hexdigest()
    partial.rename(blobs_dir / digest)
    return f"sha256:{uncompressed.sha.hexdigest()}", f"sha256:{digest}", compressed.size


def _put_json(blobs_dir: Path, value: object) -> tuple[str, int]:
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs_dir / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def write_oci_layout(oci: Path, context: Path, reference: str, entry: str, models: Sequence[PackagedModel],
                     on_bytes: Callable[[int], None]) -> str:
    """Write the OCI image layout of the application layer; return the manifest digest."""
    blobs_dir = oci / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True)
    diff_id, layer_digest, layer_size = write_layer(context, blobs_dir, on_bytes)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {
            "Env": [f"{key}={value}" for key, value in image_environment(entry, models).items()],
            "ExposedPorts": {f"{PORT}/tcp": {}},
            "WorkingDir": f"/{APP_ROOT}",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_digest, config_size = _put_json(blobs_dir, config)
    manifest = {
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer_size}],
        "annotations": {"org.opencontainers.image.base.name": BASE_IMAGE},
    }
    manifest_digest, manifest_size = _put_json(blobs_dir, manifest)
    write_index(oci, reference, manifest_digest, manifest_size)
    return manifest_digest


def write_index(oci: Path, reference: str, manifest_digest: str, manifest_size: int) -> None:
    """``index.json`` (the one manifest, tagged ``reference``) and ``oci-layout``."""
    tag = reference.rsplit(":", 1)[-1]
    index = {
        "schemaVersion": 2, "mediaType": MEDIA_INDEX,
        "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": tag,
                                       "io.containerd.image.name": reference}}],
    }
    (oci / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    (oci / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n")


def _copy_blob(source: Path, destination: Path, digest: str, on_bytes: Callable[[int], None]) -> None:
    """Copy one blob, checking its content against its digest on the way."""
    sha = hashlib.sha256()
    with source.open("rb") as reading, destination.open("wb") as writing:
        while chunk := reading.read(1024 * 1024):
            sha.update(chunk)
            writing.write(chunk)
            on_bytes(len(chunk))
    if f"sha256:{sha.hexdigest()}" != digest:
        raise ValueError(f"blob {digest} of the source image does not match its digest: the layout is damaged")


def copy_image(source_oci: Path, directory: Path, digest: str, reference: str, progress: Progress) -> None:
    """Promote: copy the manifest ``digest`` and the blobs it names from the OCI layout ``source_oci`` into
    ``directory/oci`` (``images/<name>/<label>``), tagged ``reference``. The bytes are not rebuilt, so the
    manifest digest is the source's. Written aside and renamed into place, like a build. Raises
    ``FileNotFoundError`` when the source has no such manifest (``KeyError`` never escapes)."""
    source_blobs = source_oci / "blobs" / "sha256"
    manifest_file = source_blobs / digest.removeprefix("sha256:")
    if not manifest_file.is_file():
        raise FileNotFoundError(f"no manifest {digest} in {source_oci}")
    manifest = json.loads(manifest_file.read_bytes())
    blobs = [digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    total = sum((source_blobs / blob.removeprefix("sha256:")).stat().st_size for blob in blobs)
    building = directory.with_name(f".{directory.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    blobs_dir = building / "oci" / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True)
    done = 0

    def on_bytes(count: int) -> None:
        nonlocal done
        done += count
        progress.advance(done, total)

    try:
        for blob in blobs:
            name = blob.removeprefix("sha256:")
            _copy_blob(source_blobs / name, blobs_dir / name, blob, on_bytes)
    except (OSError, ValueError):
        shutil.rmtree(building, ignore_errors=True)
        raise
    write_index(building / "oci", reference, digest, manifest_file.stat().st_size)
    shutil.rmtree(directory, ignore_errors=True)
    building.rename(directory)


def image_directory(state: Path, name: str, label: str) -> Path:
    """Where a build of ``name:label`` lives in the state folder."""
    return state / "images" / name / label


def built_entry(directory: Path) -> str | None:
    """The entry script (path in the app folder) a finished build runs, read from its image config's
    ``AZUREML_ENTRY_SCRIPT`` (index -> manifest -> config); None when the build is gone or incomplete."""
    blobs_dir = directory / "oci" / "blobs" / "sha256"
    try:
        index = json.loads((directory / "oci" / "index.json").read_text())
        manifest = json.loads((blobs_dir / index["manifests"][0]["digest"].split(":", 1)[1]).read_text())
        config = json.loads((blobs_dir / manifest["config"]["digest"].split(":", 1)[1]).read_text())
        variables = dict(item.split("=", 1) for item in config["config"]["Env"])
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    entry = variables.get("AZUREML_ENTRY_SCRIPT")
    return entry if entry and (directory / "context" / APP / entry).is_file() else None


def build(directory: Path, spec: ImageSpec, reference: str, models: Sequence[PackagedModel], blobs: BlobStore,
          progress: Progress) -> str:
    """Build ``reference`` into ``directory`` (``images/<name>/<label>``); return the
    manifest digest. Replaces what an interrupted earlier build may have left there."""
    building = directory.with_name(f".{directory.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    context = building / "context"
    context.mkdir(parents=True)
    progress.step(f"building image {reference}")
    entry = write_context(context, spec, reference, models, blobs)
    total = sum(p.stat().st_size for _, p in layer_entries(context) if p is not None)
    done = 0

    def on_bytes(count: int) -> None:
        nonlocal done
        done += count
        progress.advance(done, total)

    digest = write_oci_layout(building / "oci", context, reference, entry, models, on_bytes)
    shutil.rmtree(directory, ignore_errors=True)
    building.rename(directory)
    return digest

