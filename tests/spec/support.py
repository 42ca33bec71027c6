"""What the spec-cache tests share: a minimal environment, a cache folder of their own, links, and the
problems a load finds."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.spec import verdicts
from reconciler.spec.loader import load_environment

ENVIRONMENT = ("apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: dev}\n"
               "spec: {provider: local, registries: {local: {}}}\n")
SCORE = "def init():\n    pass\n\n\ndef run(data):\n    return data\n"


def use_own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches under ``tmp_path``, which is also the working directory. Files these tests write are seconds old
    at most: their signatures are trusted at once (each change a test makes changes a size, an inode, a ctime
    or a link, so none can hide within one clock tick)."""
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(verdicts, "RACY_SECONDS", -60.0)


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
