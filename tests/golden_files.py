"""The golden-file convention shared by every tier: compare an output with a committed file,
or rewrite the file when ``UPDATE_GOLDEN=1`` (then read the diff before committing)."""

from __future__ import annotations

import os
from pathlib import Path

UPDATE_VARIABLE = "UPDATE_GOLDEN"


def updating() -> bool:
    """Whether this run rewrites golden files instead of comparing with them."""
    return os.environ.get(UPDATE_VARIABLE) == "1"


def check_golden_file(path: Path, actual: str, name: str | None = None) -> None:
    """Compare ``actual`` with the text of ``path``; ``UPDATE_GOLDEN=1`` rewrites the file instead.
    ``name`` is how failures refer to the file (default: the path)."""
    shown = name or str(path)
    if updating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}: run with {UPDATE_VARIABLE}=1 and review it"
    assert actual == path.read_text(encoding="utf-8"), (
        f"{shown} differs from the golden file ({UPDATE_VARIABLE}=1 regenerates it)")
