"""The apply lock across CI runners, kept in the IoT Hub itself: no storage account, no extra service.

The lock is a device identity, ``edge-reconciler-lock-<env>`` (disabled, not an IoT Edge device, so no
deployment targets it and it cannot connect). Its ``statusReason`` holds the record
``<expires>|<lock id>|<since>|<holder>`` (128 characters at most), and its etag makes every step a
compare-and-swap on that one record:

* **Take:** ``PUT /devices/{id}`` without ``If-Match`` creates it, atomically: exactly one run gets 200,
  the others 409 ``DeviceAlreadyExists``.
* **Held:** a run that gets 409 reads the identity. A live record of another run raises ``LockHeld`` with
  the holder, the expiry and the lock id ``reconciler force-unlock`` takes.
* **Ours already:** the lock id is unique per run. A create whose answer was lost (the hub created the
  device, the connection broke, the repeat got 409) reads back its own lock id: the lock is held, by us.
* **Expired:** a run killed mid-apply leaves the device behind. Once its record has expired, the next run
  takes it over with ``PUT /devices/{id}`` and ``If-Match: "<etag>"``: of two runs racing for it, one gets
  200 and the other 412 (then ``LockHeld``).
* **Renew:** the holder extends the expiry before each change once half the time to live has passed, with
  the same conditional ``PUT``: a 412 means another run took the lock over (this run was too slow) and the
  apply stops, unless the record read back is our own (our write landed, its answer was lost).
* **Release:** ``DELETE /devices/{id}`` with ``If-Match`` the etag of a record that carries our lock id.
  A repeat whose first answer was lost gets 404: released.
* **Force-unlock:** the same conditional delete, for a lock id a person names.

Costs: take = 1 call, held = 2, release = 2; identity operations are throttled at 100/min/unit, far above
what applies need. Every write is safe to send again after a lost answer (``repeatable``).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from reconciler.errors import LockHeld, PermanentProviderError, ProviderError
from reconciler.providers.azure import errors
from reconciler.providers.azure.iothub import IoTHub
from reconciler.providers.base import LockInfo

TTL_VARIABLE = "RECONCILER_LOCK_TTL"
DEFAULT_TTL = timedelta(hours=2)  # longer than the slowest image build the image builder waits for (1 h)
MAX_STATUS_REASON = 128

log = logging.getLogger("reconciler.providers.azure")


def lock_device_id(environment: str) -> str:
    return f"edge-reconciler-lock-{environment}"


def default_ttl() -> timedelta:
    raw = os.environ.get(TTL_VARIABLE)
    if raw:
        try:
            seconds = float(raw)
            if seconds > 0:
                return timedelta(seconds=seconds)
        except ValueError:
            pass
        log.warning("%s=%r is not a number of seconds > 0; using %s", TTL_VARIABLE, raw, DEFAULT_TTL)
    return DEFAULT_TTL


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _parse_time(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class LockRecord:
    """Who holds the lock, until when, and the lock id that names this hold."""

    lock_id: str
    holder: str
    since: str
    expires: str

    def to_status_reason(self) -> str:
        return "|".join((self.expires, self.lock_id, self.since, self.holder))[:MAX_STATUS_REASON]

    @classmethod
    def from_status_reason(cls, text: Any) -> LockRecord | None:
        parts = str(text or "").split("|", 3)
        if len(parts) != 4 or _parse_time(parts[0]) is None:
            return None
        expires, lock_id, since, holder = parts
        return cls(lock_id, holder, since, expires)

    def info(self) -> LockInfo:
        return LockInfo(self.holder or "an unknown holder", self.since or "an unknown time", self.expires,
                        self.lock_id)


@dataclass(frozen=True)
class _Seen:
    """The lock device as read: its record (None if it carries none) and its etag."""

    record: LockRecord | None
    etag: str


class HubLock:
    """One run's hold on an environment's lock (see the module docstring)."""

    def __init__(self, hub: IoTHub, environment: str, holder: str, ttl: timedelta | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.hub = hub
        self.environment = environment
        self.holder = holder
        self.ttl = ttl or default_ttl()
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self.device_id = lock_device_id(environment)
        self.lock_id = secrets.token_hex(8)  # unique to this run: how it recognises its own lock
        self.record: LockRecord | None = None  # ours, while held
        self._etag: str | None = None

    @property
    def held(self) -> bool:
        return self.record is not None

    @property
    def expires(self) -> str | None:
        return self.record.expires if self.record else None

    def _what(self) -> str:
        return f"lock {self.device_id} on {self.hub.access.host}"

    def _new_record(self) -> LockRecord:
        now = self._clock()
        return LockRecord(self.lock_id, self.holder, _iso(now), _iso(now + self.ttl))

    def _status(self, call: Callable[[], Any], write: bool) -> tuple[int | None, Any]:
        """Run an SDK call; return ``(None, result)``, or ``(status, None)`` for 404/409/412. Writes are
        repeatable: every caller reads the lock back after a 409 or 412, so a repeat of a write that landed
        is recognised by its lock id."""

        def attempt() -> tuple[int | None, Any]:
            try:
                return None, call()
            except Exception as exc:
                status = errors.describe(exc).status
                if status in (404, 409, 412):
                    return status, None
                raise

        result: tuple[int | None, Any] = self.hub.call(attempt, what=self._what(), write=write,
                                                       repeatable=write)
        return result

    def _read(self) -> _Seen | None:
        """The lock device as it is now; None when there is none."""
        status, device = self._status(lambda: self.hub.registry.get_device(self.device_id), write=False)
        if status == 404:
            return None
        return _Seen(LockRecord.from_status_reason(getattr(device, "status_reason", None)), str(device.etag))

    def _expired(self, record: LockRecord) -> bool:
        expires = _parse_time(record.expires)
        return expires is None or expires <= self._clock()

    def _ours(self, seen: _Seen | None) -> bool:
        return seen is not None and seen.record is not None and seen.record.lock_id == self.lock_id

    # --- take -----------------------------------------------------------------------

    def acquire(self) -> None:
        for _ in range(3):
            record = self._new_record()
            status, device = self._status(self._creator(record), write=True)
            if status is None:
                self._hold(record, str(device.etag))
                return
            if status != 409:
                raise PermanentProviderError(f"unexpected answer {status} when creating the lock device",
                                             resource=self._what())
            seen = self._read()
            if seen is None:
                continue  # released between our create and our read: try again
            if self._ours(seen):  # our own create, whose answer was lost
                assert seen.record is not None
                self._hold(seen.record, seen.etag)
                return
            if seen.record is None or not self._expired(seen.record):
                raise self._held(seen.record)  # a device of that name without a record is not ours to take
            if self._swap(record, seen.etag):
                log.warning("took over the apply lock of environment %s from %s (expired %s); the plan shows what "
                            "that run left unfinished", self.environment, seen.record.holder, seen.record.expires)
                return
        seen = self._read()
        raise self._held(seen.record if seen else None)

    def _creator(self, record: LockRecord) -> Callable[[], Any]:
        """``PUT /devices/{id}`` without ``If-Match``: a disabled, non-edge identity carrying ``record``."""
        return lambda: self.hub.registry.create_device_with_sas(self.device_id, None, None, "disabled",
                                                                iot_edge=False,
                                                                status_reason=record.to_status_reason())

    def _hold(self, record: LockRecord, etag: str) -> None:
        self.record, self._etag = record, etag

    def _swap(self, record: LockRecord, etag: str) -> bool:
        """Replace the record read with ``etag`` by ``record`` (conditional ``PUT /devices/{id}``). False when
        another run changed or deleted the lock first."""
        status, device = self._status(lambda: self.hub.registry.update_device_with_sas(
            self.device_id, etag, None, None, "disabled", iot_edge=False,
            status_reason=record.to_status_reason()), write=True)
        if status is None:
            self._hold(record, str(device.etag))
            return True
        seen = self._read() if status == 412 else None
        if self._ours(seen) and seen is not None and seen.record == record:  # it landed; its answer was lost
            self._hold(record, seen.etag)
            return True
        return False

    # --- hold -----------------------------------------------------------------------

    def renew_if_needed(self) -> None:
        """Extend the expiry once half the time to live is spent. Raises ``LockHeld`` if the lock was lost."""
        if self.record is None or self._etag is None:
            return
        expires = _parse_time(self.record.expires)
        if expires is not None and expires - self._clock() > self.ttl / 2:
            return
        renewed = LockRecord(self.lock_id, self.holder, self.record.since, _iso(self._clock() + self.ttl))
        if not self._swap(renewed, self._etag):
            seen = self._read()
            self.record = None
            who = seen.record.holder if seen and seen.record else None
            if who is None:
                raise LockHeld(f"the apply lock of environment {self.environment} was released by someone else "
                               f"(the device {self.device_id} was deleted); this apply stopped; run `reconciler "
                               "plan` to see what remains")
            raise LockHeld(f"the apply lock of environment {self.environment} expired and was taken over by "
                           f"{who}; this apply stopped; run `reconciler plan` to see what remains")

    def release(self) -> None:
        if self.record is None:
            return
        self.record = None
        seen = self._read()
        if seen is None:
            return
        if not self._ours(seen):
            who = seen.record.holder if seen.record else "an unknown holder"
            log.warning("the apply lock of environment %s is held by %s now; left in place", self.environment, who)
            return
        self._delete(seen.etag)

    def abandon(self) -> None:
        """After a failed ``acquire``: remove the lock if a create of ours landed unseen. Best effort: a
        network that just failed may fail again, and then the message names the lock id to remove."""
        try:
            seen = self._read()
            if self._ours(seen) and seen is not None:
                self._delete(seen.etag)
        except ProviderError as exc:
            log.warning("could not check whether the apply lock of environment %s was created (%s); if a later "
                        "apply reports it held with lock id %s, remove it with `reconciler force-unlock <ENV_DIR> "
                        "%s`", self.environment, exc, self.lock_id, self.lock_id)

    def _delete(self, etag: str) -> bool:
        """``DELETE /devices/{id}`` if the device still has ``etag``; True when it is gone."""
        status, _ = self._status(lambda: self.hub.registry.delete_device(self.device_id, etag), write=True)
        return status in (None, 404)

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Remove the lock whose id is ``lock_id``, and only that one; returns who held it."""
        seen = self._read()
        if seen is None:
            raise PermanentProviderError(f"environment {self.environment} is not locked (no device {self.device_id} "
                                         "in the hub); nothing to unlock")
        if seen.record is None or seen.record.lock_id != lock_id:
            current = f"lock id {seen.record.lock_id} ({seen.record.info()})" if seen.record else "no lock id"
            raise PermanentProviderError(f"the lock of environment {self.environment} has {current}, not lock id "
                                         f"{lock_id}; nothing was removed")
        if not self._delete(seen.etag):
            raise PermanentProviderError(f"the lock of environment {self.environment} changed while it was being "
                                         "removed (renewed or taken over); nothing was removed; check again")
        return seen.record.info()

    def _held(self, record: LockRecord | None) -> LockHeld:
        if record is None:
            return LockHeld(
                f"another apply holds the lock of environment {self.environment}: the device {self.device_id} in "
                f"the hub {self.hub.access.host} carries no lock record. If no apply is running, delete that device "
                f"identity (az iot hub device-identity delete --hub-name <hub> --device-id {self.device_id}).")
        return LockHeld(
            f"another apply holds the lock of environment {self.environment}: {record.info()}. Wait for it to "
            "finish and try again; if that run died, the lock is taken over once it expires, or remove it now "
            f"with `reconciler force-unlock <ENV_DIR> {record.lock_id}`.")


@contextmanager
def hold(lock: HubLock) -> Iterator[HubLock]:
    """Hold ``lock`` for the ``with`` block; released even when the block fails. A failed release is
    logged, not raised: it must not hide the block's own error, and the lock expires anyway."""
    try:
        lock.acquire()
    except ProviderError:
        lock.abandon()
        raise
    try:
        yield lock
    finally:
        try:
            lock.release()
        except ProviderError as exc:
            log.warning("could not release the apply lock of environment %s (%s); it expires at %s; remove it now "
                        "with `reconciler force-unlock <ENV_DIR> %s`", lock.environment, exc,
                        lock.expires or "its expiry", lock.lock_id)
