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


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path``, with ``..`` and symbolic links resolved, lies inside ``root``."""
    return path.resolve().is_relative_to(root.resolve())
