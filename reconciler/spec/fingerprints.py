"""Content fingerprints of models and images: identity and change detection by content.

A model's fingerprint is the SHA-256 of its files (names and contents); an image's covers
its runtime, entry script, conda file, source directory and the fingerprints of its models.
A model from a URI (``spec.source.uri``) is one file whose digest the spec pins: its fingerprint is
that of a folder holding that file alone, computed without reading it (``uri_fingerprint``), so the
same bytes under the same name give the same fingerprint wherever they come from. A registered
version (``spec.source.registered``) has the fingerprint the backend reports for it
(``core.model_sources``): its files are not in the repository. A promoted image
(``spec.promoteFrom``) has the fingerprint of the image it is copied from, computed from its
environment's specs: the same inputs, the same label, in both environments.
Hashing a multi-gigabyte model on every plan would be slow, so file digests are cached by
(path, size, mtime): an unchanged file is never read again. The cache is a plain value the
engine loads from and saves to the environment's state folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.model.specs import DesiredState, Fingerprints, ImageSpec, ModelSpec, PromotedImageSpec
from reconciler.spec.folders import Folders

CHUNK = 1024 * 1024


@dataclass
class HashCache:
    """File digests keyed by absolute path, valid while size and mtime are unchanged."""

    entries: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    bytes_hashed: int = 0  # how much was actually read: 0 on a warm no-op plan
    dirty: bool = False
    # Folder listings and file stats of this run (not saved): sizing the work and hashing it (and the
    # spec checks, when the engine shares its Folders with the loader) walk each folder and stat each file once.
    folders: Folders = field(default_factory=Folders, compare=False, repr=False)
    _stats: dict[str, os.stat_result] = field(default_factory=dict, compare=False, repr=False)
    _files: dict[str, list[tuple[str, str]]] = field(default_factory=dict, compare=False, repr=False)

    def files(self, path: Path) -> list[tuple[str, str]]:
        """``(relative posix path, file)`` of a file or of every file below a folder, sorted; links to
        folders are not followed, links to files count as files (as ``Path.rglob`` + ``is_file``)."""
        key = os.fspath(path)
        listing = self._files.get(key)
        if listing is None:
            # A folder is listed (a file cannot be: no entries), so only a path with no file below it costs a
            # stat to tell a file from an empty or missing folder.
            listing = sorted((entry.relative, entry.path) for entry in self.folders.entries(key) if entry.is_file)
            if not listing and os.path.isfile(key):
                listing = [(os.path.basename(key), key)]
            self._files[key] = listing
        return listing

    def stat(self, file: str | Path) -> os.stat_result:
        key = os.fspath(file)
        found = self._stats.get(key)
        if found is None:
            found = self._stats[key] = os.stat(key)
        return found

    @classmethod
    def from_json(cls, text: str, folders: Folders | None = None) -> HashCache:
        folders = folders or Folders()
        try:
            raw = json.loads(text)
            return cls({path: (int(size), int(mtime), str(digest)) for path, (size, mtime, digest) in raw.items()},
                       folders=folders)
        except (ValueError, TypeError):
            return cls(folders=folders)  # a damaged cache only costs a re-hash

    def to_json(self) -> str:
        return json.dumps(self.entries, sort_keys=True)

    def digest(self, path: str | Path, on_bytes: Callable[[int], None] | None = None) -> str:
        key = os.fspath(path)
        stat = self.stat(key)
        cached = self.entries.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return cached[2]
        sha = hashlib.sha256()
        with open(key, "rb") as stream:
            while chunk := stream.read(CHUNK):
                sha.update(chunk)
                self.bytes_hashed += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        digest = sha.hexdigest()
        self.entries[key] = (stat.st_size, stat.st_mtime_ns, digest)
        self.dirty = True
        return digest


def tree_digest(path: Path, cache: HashCache, on_bytes: Callable[[int], None] | None = None) -> str:
    """Digest of a file (its name and content) or of a folder (every file's relative path
    and content, in sorted order). Moving a file inside a folder changes the digest."""
    sha = hashlib.sha256()
    for relative, file in cache.files(path):
        sha.update(f"{relative}\0{cache.digest(file, on_bytes)}\n".encode())
    return sha.hexdigest()


def uri_fingerprint(file_name: str, sha256: str) -> str:
    """``tree_digest`` of a folder holding one file ``file_name`` whose content has this SHA-256."""
    return hashlib.sha256(f"{file_name}\0{sha256}\n".encode()).hexdigest()


def image_fingerprint(image: ImageSpec, model_fingerprints: dict[str, str], cache: HashCache) -> str:
    base = image.source_directory or image.entry_script.parent
    inputs = {
        "runtime": image.runtime,
        "entryScript": [_relative(os.fspath(image.entry_script), os.fspath(base), os.getcwd()),
                        cache.digest(image.entry_script)],
        "condaFile": cache.digest(image.conda_file),
        "sourceDirectory": tree_digest(image.source_directory, cache) if image.source_directory else None,
        "models": {name: model_fingerprints[name] for name in sorted(image.models)},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=256)
def _relative(path: str, start: str, working_directory: str) -> str:
    """``os.path.relpath``, once per script and folder (300 images of the benchmark share one script); the
    working directory is part of the key because relpath reads it for relative paths."""
    return os.path.relpath(path, start)


def model_fingerprint(spec: ModelSpec, cache: HashCache, on_bytes: Callable[[int], None] | None = None) -> str | None:
    """The fingerprint of a model from files or from a URI; None for a registered version (the backend knows it)."""
    if spec.uri is not None:
        return uri_fingerprint(spec.uri.file_name, spec.uri.sha256)
    if spec.path is None:
        return None
    return tree_digest(spec.path, cache, on_bytes)


def compute_fingerprints(
    desired: DesiredState, cache: HashCache, on_bytes: Callable[[int], None] | None = None,
    registered: Mapping[str, str] | None = None,
) -> Fingerprints:
    """``registered``: the fingerprints of the models whose source is a registered version (by spec name),
    as ``core.model_sources.registered_fingerprints`` found them in the snapshot."""
    models = {}
    for name, spec in sorted(desired.models.items()):
        fingerprint = model_fingerprint(spec, cache, on_bytes)
        if fingerprint is None:
            if registered is None or name not in registered:
                raise ValueError(f"model {name}: the fingerprint of registered version {spec.registered} is needed")
            fingerprint = registered[name]
        models[name] = fingerprint
    images = {name: image_fingerprint(spec, models, cache) for name, spec in desired.images.items()}
    images.update({name: promoted_fingerprint(spec, cache, on_bytes) for name, spec in desired.promotions.items()})
    return Fingerprints(models=models, images=dict(sorted(images.items())))


def promoted_fingerprint(spec: PromotedImageSpec, cache: HashCache,
                         on_bytes: Callable[[int], None] | None = None) -> str:
    """The fingerprint of the image ``spec`` is copied from, from its environment's specs (which may
    promote it in turn: the loader has refused cycles)."""
    return compute_fingerprints(spec.source, cache, on_bytes).images[spec.source_image]


def bytes_to_hash(desired: DesiredState, cache: HashCache, models: Iterable[str] | None = None) -> int:
    """How many bytes ``compute_fingerprints`` will read (for a progress bar); of the named ``models`` only
    (and no promotion), when given."""
    if models is not None:
        return sum(_model_bytes_to_hash(desired.models[name], cache) for name in models)
    total = sum(bytes_to_hash(spec.source, cache) for spec in desired.promotions.values())
    return total + sum(_model_bytes_to_hash(spec, cache) for spec in desired.models.values())


def _model_bytes_to_hash(spec: ModelSpec, cache: HashCache) -> int:
    total = 0
    if spec.path is not None:
        for _, file in cache.files(spec.path):
            stat = cache.stat(file)
            cached = cache.entries.get(file)
            if not (cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns):
                total += stat.st_size
    return total
