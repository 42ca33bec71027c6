"""The apply lock: ``apply.lock`` in the state folder, so two applies never interleave.

The file is created with O_CREAT|O_EXCL, which is atomic: exactly one run creates it. It
records who holds it ({holder, pid, host, since}) so a refused run can say who to wait
for. A run killed mid-apply leaves the file behind; if its process is gone and it ran on
this host, the next run takes the lock over (and logs a warning) instead of making the
user clean up by hand. A lock from another host is never taken over: its pid means
nothing here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from reconciler.errors import LockHeld, PermanentProviderError
from reconciler.providers.base import LockInfo

LOCK_FILE = "apply.lock"

log = logging.getLogger(__name__)


def _record(holder: str) -> dict[str, object]:
    return {"holder": holder, "pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _read(path: Path) -> dict[str, object] | None:
    """The lock's record; None if it vanished or cannot be parsed (being written)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. PermissionError: it exists, under another user
    return True


def is_stale(record: dict[str, object]) -> bool:
    """Left by a process of this host that no longer runs."""
    pid = record.get("pid")
    return (record.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0
            and not _process_alive(pid))


def _create(path: Path, holder: str) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(_record(holder), stream)
    return True


def _held(path: Path, record: dict[str, object] | None) -> LockHeld:
    info = LockInfo(str(record.get("holder", "an unknown run")), str(record.get("since", "an unknown time"))) \
        if record else LockInfo("an unknown run (the lock file is unreadable)", "an unknown time")
    return LockHeld(
        f"another apply holds the lock of this environment: {info}. Wait for it to finish and try again; "
        f"if that run died, remove {path} and try again.")


def acquire(directory: Path, holder: str) -> Path:
    """Take the lock or raise ``LockHeld``; return the lock file's path."""
    path = directory / LOCK_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if _create(path, holder):
            return path
        record = _read(path)
        if record is None or not is_stale(record):
            raise _held(path, record)
        log.warning("taking over the apply lock left by %s since %s (process %s is gone); "
                    "the next plan shows what that run did not finish",
                    record.get("holder"), record.get("since"), record.get("pid"))
        # Re-read just before removing: another run may have taken it over meanwhile.
        if _read(path) == record:
            path.unlink(missing_ok=True)
        if _create(path, holder):
            return path
        raise _held(path, _read(path))
    except OSError as exc:
        raise PermanentProviderError(f"cannot create the lock file {path}: {exc.strerror or exc}") from exc


@contextmanager
def hold(directory: Path, holder: str) -> Iterator[None]:
    """Hold the lock for the ``with`` block; released even when the block fails."""
    path = acquire(directory, holder)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
