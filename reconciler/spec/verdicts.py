"""A whole environment's load, reused when nothing it was made from has changed.

``reconciler validate`` and ``plan`` load the same unchanged specs run after run: the YAML parse, the
schemas and the checks (1,000 model folders walked, 1,600 paths resolved) cost most of a ``validate``
although their answer cannot have changed. The spec cache (``cache.py``) saves the parse and the schema
verdicts by content; this saves the rest. After a load that found **no problem**, it keeps the resulting
``DesiredState`` with what the load read, and the next load returns it when all of these are unchanged:

* the code: the Python version, the file signatures of the ``reconciler`` modules and of PyYAML and
  jsonschema as they were imported by the load (an upgrade or an edit of the checks starts afresh);
* the command's context: the working directory (locations are shown relative to it), the folder as given,
  the repository root;
* the spec files: their list and the SHA-256 of each one's bytes (read again each time, cheap);
* every path the checks looked at (model folders and files, entry scripts, conda files, source and samples
  folders): the path with ``..`` and links resolved (so a link moved to lead out of the repository is seen)
  and its ``stat`` signature (kind, inode, size, mtime and ctime in nanoseconds); below a model or samples
  folder, the signature of every folder (an entry added, removed, renamed or replaced changes its
  folder's mtime and ctime), the resolution and signature of every link, and for samples every file.

A load with problems is never kept, so every diagnostic is computed afresh (the broken-spec corpus never
meets this cache), nor a load that promotes images from another environment (that one's files would be
inputs too). A path changed in the moment before the save could keep its signature through a second
change within the file system's clock tick (git's "racily clean" entries), so a load whose inputs changed
less than ``RACY_SECONDS`` before it ended is not kept.

**Why the pickle is safe to read.** The file lives in the tool's own cache folder (``.reconciler/spec-cache/``,
git-ignored, or ``$RECONCILER_CACHE_DIR``), next to the JSON spec cache. Even so it is read with an
unpickler that only resolves the frozen value classes of ``reconciler.model`` and ``pathlib`` paths (Python's
documented "restricting globals"): a crafted file can build those values, never call anything else, so
reading it executes nothing. Nor can a file written elsewhere (say, committed to the repository) pass for a
verdict: its key would have to match the inode numbers and ctimes of this checkout's files, which no one
knows before the checkout exists. A file that cannot be read or does not match is ignored (a full load
runs and replaces it); one that cannot be written is skipped: it is only a cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import sys
import time
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

from reconciler.model.specs import DesiredState, ImageSpec
from reconciler.spec.paths import Boundary

FORMAT = 2
RACY_SECONDS = 1.0
# The modules whose classes a cached DesiredState may hold: its frozen values, and paths.
_VALUE_MODULES = ("reconciler.model.specs", "reconciler.model.behaviour", "reconciler.model.diagnostics")
_PATH_CLASSES = {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"}
# Where pickle finds them: Python 3.13 defines them in ``pathlib._local`` (``PosixPath.__module__``).
_PATH_MODULES = {"pathlib", "pathlib._local"}
# Third-party code whose version decides a verdict, besides the package itself.
_CODE_PACKAGES = ("reconciler", "yaml", "jsonschema")

Signature = tuple[int, ...] | None


def signature(path: str) -> Signature:
    """What changes when a file or folder changes (following links); None when there is nothing there."""
    try:
        return stat_signature(os.stat(path))
    except (OSError, ValueError):
        return None


def stat_signature(st: os.stat_result) -> Signature:
    """``signature`` of a ``stat`` result already taken."""
    return (st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        # A path as one string: unpickling then parses it once instead of once per part (2x faster).
        if isinstance(obj, PurePath):
            return type(obj), (str(obj),)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    """Resolves only the value classes of ``reconciler.model`` and pathlib paths: nothing is called but them."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _PATH_MODULES and name in _PATH_CLASSES:
            return getattr(sys.modules["pathlib"], name)
        if module in _VALUE_MODULES:
            value = getattr(sys.modules[module], name, None)
            if isinstance(value, type) and value.__module__ == module:
                return value
        raise pickle.UnpicklingError(f"{module}.{name} is not a spec value")


def _code() -> tuple[tuple[str, Signature], ...]:
    """The signature of every module file of the code that decides a verdict, as imported now."""
    found = []
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in _CODE_PACKAGES:
            file = getattr(module, "__file__", None)
            if file:
                found.append((file, signature(file)))
    return tuple(sorted(found))


def _walk(folder: str, *, files: bool) -> Iterable[tuple[str, str]]:
    """("folder" | "link" | "file", path) below ``folder``, links not followed (as the checks list them)."""
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except OSError:
        return
    for entry in entries:
        if entry.is_symlink():
            yield "link", entry.path
        elif entry.is_dir(follow_symlinks=False):
            yield "folder", entry.path
            yield from _walk(entry.path, files=files)
        elif files:
            yield "file", entry.path


class Verdicts:
    """The cached load of one environment folder: ``load`` before a full load, ``save`` after one."""

    def __init__(self, path: Path, root: Path, directory: Path, spec_files: list[Path]) -> None:
        self.path = path
        self.root = root
        self._started = time.time()
        digests = []
        for file in spec_files:
            try:
                digests.append((str(file), hashlib.sha256(file.read_bytes()).hexdigest()))
            except OSError:
                digests.append((str(file), ""))
        self.key = (FORMAT, sys.version, os.getcwd(), str(directory), str(root), tuple(digests))
        # Names the verdict this load came from or was kept as (random, new with each kept load), for caches of
        # what follows from the same ``DesiredState`` and folder listings (``spec.memo``); None when not kept.
        self.token: str | None = None

    @classmethod
    def for_environment(cls, root: Path, directory: Path, spec_files: list[Path]) -> Verdicts:
        override = os.environ.get("RECONCILER_CACHE_DIR")
        base = Path(override) if override else root / ".reconciler"
        name = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
        return cls(base / "spec-cache" / f"{name}.verdict", root, directory, spec_files)

    # --- reading --------------------------------------------------------------------------

    def load(self) -> DesiredState | None:
        """The cached load, if the cache file matches this run and nothing it read has changed."""
        try:
            with open(self.path, "rb") as file:
                unpickler = _Unpickler(file)
                key, code, paths, entries, token = unpickler.load()
                if key != self.key or not self._unchanged(code, paths, entries):
                    return None
                desired = unpickler.load()
        except Exception:  # noqa: BLE001 -- a damaged or foreign cache file is ignored, whatever is wrong with it
            return None
        if not isinstance(desired, DesiredState) or not isinstance(token, str):
            return None
        self.token = token
        return desired

    def _unchanged(self, code: Any, paths: Any, entries: Any) -> bool:
        if any(signature(file) != known for file, known in code):
            return False
        boundary = Boundary(self.root)
        if any(boundary.resolve(path) != resolved or signature(path) != known for path, resolved, known in paths):
            return False
        return all(signature(entry) == known for entry, known in entries)

    # --- writing --------------------------------------------------------------------------

    def save(self, desired: DesiredState) -> None:
        """Keep a load that found no problem (the caller's promise), unless it promotes images or an input
        changed too recently to trust its signature."""
        if desired.promotions:
            return
        paths, entries = self._inputs(desired)
        code = _code()
        signatures = [known for _, _, known in paths] + [known for _, known in (*entries, *code)]
        latest = max((known[5] for known in signatures if known is not None), default=0)
        if latest / 1e9 >= self._started - RACY_SECONDS:
            return
        buffer = io.BytesIO()
        pickler = _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        token = os.urandom(16).hex()
        pickler.dump((self.key, code, paths, entries, token))
        pickler.dump(desired)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_bytes(buffer.getvalue())
            os.replace(temporary, self.path)
        except OSError:
            return
        self.token = token

    def _inputs(self, desired: DesiredState) -> tuple[tuple[tuple[str, str, Signature], ...],
                                                      tuple[tuple[str, Signature], ...]]:
        """What the checks looked at: (path, resolved, signature) of each path a spec names and of each link
        below its folders, and (path, signature) of the folders below them (and of the files, for samples)."""
        boundary = Boundary(self.root)
        named: dict[str, bool] = {}  # path -> whether the files below it are read (samples)
        for model in desired.models.values():
            if model.path is not None:
                named.setdefault(str(model.path), False)
        for image in desired.images.values():
            if not isinstance(image, ImageSpec):
                continue
            for file in (image.entry_script, image.conda_file, image.source_directory):
                if file is not None:
                    named.setdefault(str(file), False)
            if image.samples is not None:
                named[str(image.samples.path)] = True
        paths: list[tuple[str, str, Signature]] = []
        entries: list[tuple[str, Signature]] = []
        for path, read_files in named.items():
            known = signature(path)
            paths.append((path, boundary.resolve(path), known))
            if known is None or not stat.S_ISDIR(known[0]):
                continue
            for kind, below in _walk(path, files=read_files):
                if kind == "link":
                    paths.append((below, boundary.resolve(below), signature(below)))
                else:
                    entries.append((below, signature(below)))
        return tuple(paths), tuple(entries)
