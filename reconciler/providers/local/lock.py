"""The apply lock: ``apply.lock`` in the state folder, so two applies never interleave.

The file is created with O_CREAT|O_EXCL, which is atomic: exactly one run creates it. It
records who holds it ({holder, pid, host, since, lock_id}) so a refused run can say who to
wait for, and which lock id ``reconciler force-unlock`` takes. A run killed mid-apply
leaves the file behind; if its process is gone and it ran on
this host, the next run takes the lock over (and logs a warning) instead of making the
user clean up by hand. A lock from another host is never taken over: its pid means
nothing here.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import LockHeld, PermanentProviderError
from reconciler.providers.base import HeldLock, LockInfo, NoRenewal

if TYPE_CHECKING:
    import logging

LOCK_FILE = "apply.lock"


def _log() -> logging.Logger:
    """This module's logger; logging (with threading and traceback) is imported only for a warning."""
    import logging

    return logging.getLogger(__name__)


def _record(holder: str) -> dict[str, object]:
    return {"holder": holder, "pid": os.getpid(), "host": _hostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"), "lock_id": secrets.token_hex(8)}


def _info(record: dict[str, object]) -> LockInfo:
    lock_id = record.get("lock_id")
    return LockInfo(str(record.get("holder", "an unknown run")), str(record.get("since", "an unknown time")),
                    lock_id=str(lock_id) if lock_id else None)


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


def current(directory: Path) -> tuple[LockInfo, bool] | None:
    """Who holds the lock of ``directory`` and whether that lock is stale; None when nobody does. Reads only."""
    record = _read(directory / LOCK_FILE)
    return None if record is None else (_info(record), is_stale(record))


def is_stale(record: dict[str, object]) -> bool:
    """Left by a process of this host that no longer runs."""
    pid = record.get("pid")
    return (record.get("host") == _hostname() and isinstance(pid, int) and pid > 0
            and not _process_alive(pid))


def _create(path: Path, record: dict[str, object]) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(record, stream)
    return True


def _held(path: Path, record: dict[str, object] | None) -> LockHeld:
    if record is None:
        return LockHeld("another apply holds the lock of this environment: an unknown run (the lock file is "
                        f"unreadable). Wait for it to finish and try again; if that run died, remove {path}.")
    info = _info(record)
    remedy = (f"`reconciler force-unlock <ENV_DIR> {info.lock_id}`" if info.lock_id else f"remove {path}")
    return LockHeld(
        f"another apply holds the lock of this environment: {info}. Wait for it to finish and try again; "
        f"if that run died, remove the lock with {remedy}.")


def acquire(directory: Path, holder: str) -> dict[str, object]:
    """Take the lock or raise ``LockHeld``; return our record."""
    path = directory / LOCK_FILE
    ours = _record(holder)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if _create(path, ours):
            return ours
        record = _read(path)
        if record is None or not is_stale(record):
            raise _held(path, record)
        _log().warning("taking over the apply lock left by %s since %s (process %s is gone); "
                    "the next plan shows what that run did not finish",
                    record.get("holder"), record.get("since"), record.get("pid"))
        # Re-read just before removing: another run may have taken it over meanwhile.
        if _read(path) == record:
            path.unlink(missing_ok=True)
        if _create(path, ours):
            return ours
        raise _held(path, _read(path))
    except OSError as exc:
        raise PermanentProviderError(f"cannot create the lock file {path}: {exc.strerror or exc}") from exc


def force_unlock(directory: Path, lock_id: str) -> LockInfo:
    """Remove the lock if its id is ``lock_id``, and only then; returns who held it."""
    path = directory / LOCK_FILE
    record = _read(path)
    if record is None:
        if path.exists():
            raise PermanentProviderError(f"the lock file {path} cannot be read; remove it by hand if no apply runs")
        raise PermanentProviderError("this environment is not locked; nothing to unlock")
    info = _info(record)
    if info.lock_id != lock_id:
        raise PermanentProviderError(f"the lock of this environment has lock id {info.lock_id} ({info}), not lock "
                                     f"id {lock_id}; nothing was removed")
    if _read(path) != record:  # compare, then delete: another run may have taken it over meanwhile
        raise PermanentProviderError("the lock changed while it was being removed; nothing was removed; check again")
    path.unlink(missing_ok=True)
    return info


@contextmanager
def hold(directory: Path, holder: str) -> Iterator[HeldLock]:
    """Hold the lock for the ``with`` block; released even when the block fails, and only if it is still
    ours (after a force-unlock, the file may be another run's lock)."""
    ours = acquire(directory, holder)
    try:
        yield NoRenewal()
    finally:
        path = directory / LOCK_FILE
        if _read(path) == ours:
            path.unlink(missing_ok=True)
        else:
            _log().warning("the apply lock was removed by force-unlock while this run held it; left as it is")


def _hostname() -> str:
    import socket  # only when a lock is taken or judged: a plan never locks

    return socket.gethostname()
