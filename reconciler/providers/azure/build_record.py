"""What an image build records of its inputs, and how a plan reads it back: the record's layout, written once for
every builder (``aml``, ``acr-tasks``) and every place it is kept (SDK v1's artifact store, SDK v2's datastore).

Neither Azure ML's ``Model.package`` (SDK v1) nor an ACR Tasks run can be asked afterwards what it was given, and
the registry's tags carry nothing, so every build records its inputs before it starts: the application and the
conda file laid out as in the image (``providers.layout.write_app``) and ``image.json`` (the entry script and the
model versions), under ``image/`` in a place named after the image and its label (``record_name``). A label is a
digest of the build's inputs, so a record already there is kept. The behaviour diff of a plan reads it back
(``BuiltImageFiles``) and fetches the model versions' files the way the SDK downloads a model, only when a run
needs them.

Where the files go is a ``RecordStore``: ``ml.ArtifactRecords`` (SDK v1: workspace artifacts, origin
``LocalUpload``, container ``record_name``) or ``ml_v2.DatastoreRecords`` (SDK v2: blobs of the workspace's
default datastore under ``LocalUpload/<record_name>/``). Nothing here imports an SDK.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Protocol

from reconciler.errors import PermanentProviderError
from reconciler.model.plan import DesiredImage
from reconciler.model.state import ModelVersion
from reconciler.providers.base import BuiltImage
from reconciler.providers.layout import WHOLE_VERSION, PackagedModel, write_app

RECORD_ORIGIN = "LocalUpload"  # as SDK v1's Model.register and SDK v2's model uploads name theirs
RECORD_PREFIX = "image"
RECORD_FILE = "image.json"


def record_name(name: str, label: str) -> str:
    """The container (v1 artifacts) or folder (v2 blobs) holding what ``name:label`` was built from."""
    return f"edge-reconciler.{name}.{label}"


class RecordStore(Protocol):
    """Where one SDK keeps build records, and how it downloads a registered model version. Paths are relative to
    the record (``image/app/score.py``); methods raise ``reconciler.errors`` types only."""

    def recorded(self, name: str, label: str) -> dict[str, str]:
        """The record of ``name:label``: path -> what ``read_recorded`` needs to read it; empty when none."""

    def upload_record(self, name: str, label: str, files: dict[str, Path], what: str) -> None:
        """Upload ``files`` (path in the record -> file on this machine) as the record of ``name:label``."""

    def read_recorded(self, path: str, handle: str, target: Path) -> None:
        """Write one recorded file (``recorded``'s path and handle) to ``target``."""

    def download_model(self, name: str, version: int, destination: Path) -> None:
        """Every file of model version ``name:version`` into ``destination``, laid out as registered."""


class BuildRecords:
    """Writes and reads build records through a ``RecordStore``: what every image builder shares."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def record(self, image: DesiredImage, models: list[ModelVersion], what: str) -> None:
        """Record what ``image`` is built from, before the build starts, unless this label has a record already.
        Costs the store's listing, then its upload of the files."""
        name, label = image.spec.name, image.label
        if any(path.endswith(f"/{RECORD_FILE}") for path in self.store.recorded(name, label)):
            return
        with tempfile.TemporaryDirectory(prefix="reconciler-image-record-") as folder:
            root = Path(folder)
            entry = write_app(root / RECORD_PREFIX, image.spec)
            (root / RECORD_PREFIX / RECORD_FILE).write_text(json.dumps(
                {"entry": entry, "models": {m.name: m.version for m in models}}, sort_keys=True) + "\n")
            files = {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*")) if path.is_file()}
            self.store.upload_record(name, label, files, f"{what} (recording its inputs)")

    def built_files(self, name: str, label: str, destination: Path) -> BuiltImage:
        """The recorded inputs of ``name:label`` under ``destination`` (``app/``, ``environment/conda.yaml``), and
        the model versions it packages; their files are fetched by ``copy`` (the store's model download), only when
        a run needs them. Costs the store's listing and one read per recorded file."""
        resource = f"image/{name}:{label}"
        recorded = self.store.recorded(name, label)
        if not recorded:
            raise PermanentProviderError(
                "nothing is recorded of what it was built from (it was built before edge-reconciler recorded "
                "build inputs, or by another tool); its next build records them", resource=resource)
        root = destination.resolve()
        start = f"{RECORD_PREFIX}/"
        for path, handle in sorted(recorded.items()):
            target = (root / path[len(start):]).resolve() if path.startswith(start) else None
            if target is None or not target.is_relative_to(root):
                raise PermanentProviderError(f"its recorded inputs hold an unexpected path {path!r}",
                                             resource=resource)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.read_recorded(path, handle, target)
        try:
            record = json.loads((root / RECORD_FILE).read_text())
            entry, versions = str(record["entry"]), {str(k): int(v) for k, v in dict(record["models"]).items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PermanentProviderError(f"its recorded inputs are incomplete ({RECORD_FILE}: {exc})",
                                         resource=resource) from exc
        (root / RECORD_FILE).unlink()
        models = tuple(PackagedModel(model, version, {WHOLE_VERSION: f"{model}:{version}"})
                       for model, version in sorted(versions.items()))
        return BuiltImage(entry, models, self._copy)

    def _copy(self, key: str, destination: Path) -> None:
        """``BuiltImage.copy``: every file of model version ``key`` (``name:version``) into ``destination``."""
        model, version = key.rsplit(":", 1)
        self.store.download_model(model, int(version), destination)
