"""Paths as shown to people, and the repository boundary spec files must stay inside."""

from __future__ import annotations

import os
from pathlib import Path


def display_path(path: Path) -> str:
    """Relative to the working directory when below it, else absolute."""
    try:
        absolute = path.absolute()
        cwd = Path.cwd()
        return os.path.relpath(absolute, cwd) if absolute.is_relative_to(cwd) else str(absolute)
    except (ValueError, OSError):
        return str(path)


def find_repository_root(start: Path) -> Path:
    """The nearest ancestor with a ``.git`` entry; spec files may not reach outside it."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start.parent if start.parent != start else start


class Boundary:
    """The repository boundary spec files must stay inside.

    ``contains`` resolves ``..`` and symbolic links like ``os.path.realpath``, but each directory
    only once: a path's directory comes from a cache, and its last component is resolved again
    only when it is a link itself (one ``lstat``). Environments name thousands of files in a few
    hundred folders, and a full ``realpath`` costs one ``lstat`` per component per file.
    """

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self._inside = self.root.rstrip(os.sep) + os.sep
        self._directories: dict[str, str] = {}

    def _directory(self, directory: str) -> str:
        """A directory resolved, from its parent resolved (so each new one costs one ``lstat``)."""
        resolved = self._directories.get(directory)
        if resolved is None:
            head, tail = os.path.split(directory)
            if tail in ("", ".", "..") or head == directory:
                resolved = os.path.realpath(directory)
            else:
                candidate = os.path.join(self._directory(head), tail)
                resolved = os.path.realpath(candidate) if os.path.islink(candidate) else candidate
            self._directories[directory] = resolved
        return resolved

    def resolve(self, path: str | os.PathLike[str]) -> str:
        text = os.fspath(path)
        if not os.path.isabs(text):
            text = os.path.join(os.getcwd(), text)  # absolute, ".." kept: it must be resolved, not cut
        head, tail = os.path.split(text)
        if tail in ("", ".", ".."):
            return self._directory(text)
        candidate = os.path.join(self._directory(head), tail)
        return os.path.realpath(candidate) if os.path.islink(candidate) else candidate

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path``, with ``..`` and symbolic links resolved, lies inside the repository."""
        resolved = self.resolve(path)
        return resolved == self.root or resolved.startswith(self._inside)
