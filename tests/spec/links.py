"""Helpers of the spec tests that make symbolic links and read what a load refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.spec.loader import load_environment


def make_link(path: Path, points_to: str) -> None:
    """Make the link ``path`` to ``points_to``; skip the test where links cannot be made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.symlink_to(points_to)
    except OSError as exc:  # e.g. Windows without the privilege
        pytest.skip(f"cannot create symbolic links here: {exc}")


def problems(env: Path) -> list[str]:
    """The messages of the problems loading ``env`` finds (none: an empty list)."""
    try:
        load_environment(env)
    except SpecError as error:
        return [diagnostic.message for diagnostic in error.diagnostics]
    return []
