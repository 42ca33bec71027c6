"""Pruning the behaviour caches: the scoring virtualenvs (one per conda file, shared by every
repository of the user) and the results of sample runs (per environment, ``.reconciler/<env>/behaviour``).

Both are least-recently-used caches: every use stamps the entry (its ``environment.json`` or the result
file gets the current mtime), and pruning keeps the ``keep`` entries used last. It runs on its own
after every command that ran samples (``plan``, ``apply``, ``test``), with the defaults below or
``$RECONCILER_KEEP_VENVS`` / ``$RECONCILER_KEEP_RESULTS``; ``reconciler gc`` runs it on demand (as
``pre-commit gc`` does), with other limits if asked. An entry the current command used is never
removed, nor a virtualenv still being built by another run (a ``.<key>.*`` folder younger than a
build's time limit); older half-built folders are debris of a killed run and go.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

KEEP_VENVS = 5  # one or two conda files per repository, a few repositories
KEEP_RESULTS = 200  # a few KB each: every image's last few versions, both sides
KEEP_VENVS_VARIABLE = "RECONCILER_KEEP_VENVS"
KEEP_RESULTS_VARIABLE = "RECONCILER_KEEP_RESULTS"


@dataclass(frozen=True)
class Pruned:
    """What one pruning removed: entries and bytes, per cache."""

    venvs: int = 0
    venv_bytes: int = 0
    results: int = 0
    result_bytes: int = 0


def limit(variable: str, default: int) -> int:
    """A keep count from the environment (a non-negative integer), else ``default``."""
    text = os.environ.get(variable, "").strip()
    return int(text) if text.isdigit() else default


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _last_use(folder: Path) -> float:
    from reconciler.behaviour.venv import COMPLETE

    try:
        return (folder / COMPLETE).stat().st_mtime
    except OSError:
        return 0.0


def prune_venvs(root: Path, keep: int, in_use: Collection[str] = ()) -> tuple[int, int]:
    """Remove all but the ``keep`` virtualenvs used last under ``root`` (and stale half-built ones);
    return (count, bytes) removed."""
    from reconciler.behaviour.venv import BUILD_TIMEOUT, COMPLETE  # not at import: `reconciler --help` stays light

    if not root.is_dir():
        return 0, 0
    complete, debris = [], []
    now = time.time()
    for entry in root.iterdir():
        if not entry.is_dir():
            continue
        if entry.name.startswith("."):
            if now - entry.stat().st_mtime > 2 * BUILD_TIMEOUT:
                debris.append(entry)
        elif (entry / COMPLETE).is_file():
            complete.append(entry)
    complete.sort(key=_last_use, reverse=True)
    doomed = debris + [entry for entry in complete[keep:] if entry.name not in in_use]
    import shutil  # here: the gc command's help text imports this module on every run

    removed = freed = 0
    for entry in doomed:
        size = _size(entry)
        # The marker goes first: a folder half removed is never taken for a complete environment.
        (entry / COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(entry, ignore_errors=True)
        removed, freed = removed + 1, freed + size
    return removed, freed


def prune_results(folder: Path, keep: int, in_use: Collection[str] = ()) -> tuple[int, int]:
    """Remove all but the ``keep`` result files used last in ``folder``; return (count, bytes) removed."""
    if not folder.is_dir():
        return 0, 0
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = freed = 0
    for entry in entries[keep:]:
        if entry.stem in in_use:
            continue
        size = entry.stat().st_size
        entry.unlink(missing_ok=True)
        removed, freed = removed + 1, freed + size
    return removed, freed


def prune(venv_root: Path, results: Path, *, keep_venvs: int, keep_results: int,
          venvs_in_use: Collection[str] = (), results_in_use: Collection[str] = ()) -> Pruned:
    venvs, venv_bytes = prune_venvs(venv_root, keep_venvs, venvs_in_use)
    count, result_bytes = prune_results(results, keep_results, results_in_use)
    return Pruned(venvs, venv_bytes, count, result_bytes)
