"""The apply lock across CI runners, kept in the IoT Hub itself: no storage account, no extra service.

The lock is a device identity, ``edge-reconciler-lock-<env>`` (disabled, not an IoT Edge device, so no
deployment targets it and it cannot connect):

* **Take:** ``PUT /devices/{id}`` without ``If-Match`` creates it, atomically: exactly one run gets 200,
  the others 409 ``DeviceAlreadyExists``. The creator writes its record (holder, since, expires, a random
  nonce) into the twin tag ``edgeReconcilerLock``; the same record, shortened, rides in the identity's
  ``statusReason`` from the create itself, so a run that sees the device before the tag is written still
  learns who holds it and until when.
* **Held:** a run that gets 409 reads the twin (and the identity if the tag is missing). A live record
  raises ``LockHeld`` with the holder and the expiry.
* **Expired:** a run killed mid-apply leaves the device behind. Once its record has expired, the next run
  takes the lock over with ``PATCH /twins/{id}`` and ``If-Match: "<twin etag>"``: of two runs racing for
  it, one gets 200 and the other 412 (then ``LockHeld``).
* **Renew:** the holder extends the expiry before each change once half the time to live has passed, with
  the same conditional patch: a 412 means another run took the lock over (this run was too slow), and the
  apply stops.
* **Release:** delete the device, after checking the twin still carries our nonce.

Costs: take = 2 calls (create + tag), held = 1-2, release = 2; identity operations are throttled at
100/min/unit, far above what applies need.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from reconciler.errors import LockHeld, PermanentProviderError, ProviderError
from reconciler.providers.azure import errors
from reconciler.providers.azure.iothub import IoTHub, quoted
from reconciler.providers.base import LockInfo

LOCK_TAG = "edgeReconcilerLock"
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


def _status_reason(record: dict[str, str]) -> str:
    """``<expires>|<nonce>|<since>|<holder>``, cut to the identity's 128 characters."""
    return "|".join((record["expires"], record["nonce"], record["since"], record["holder"]))[:MAX_STATUS_REASON]


def _from_status_reason(text: Any) -> dict[str, str] | None:
    parts = str(text or "").split("|", 3)
    if len(parts) != 4 or _parse_time(parts[0]) is None:
        return None
    return {"expires": parts[0], "nonce": parts[1], "since": parts[2], "holder": parts[3]}


def _from_tags(tags: Any) -> dict[str, str] | None:
    record = (tags or {}).get(LOCK_TAG) if isinstance(tags, dict) else None
    if not isinstance(record, dict) or _parse_time(record.get("expires")) is None:
        return None
    return {key: str(record.get(key, "")) for key in ("holder", "since", "expires", "nonce")}


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
        self.record: dict[str, str] | None = None  # ours, while held
        self._last_expires: str | None = None
        self._twin_etag: str | None = None

    @property
    def held(self) -> bool:
        return self.record is not None

    @property
    def expires(self) -> str | None:
        return self._last_expires

    def _what(self) -> str:
        return f"lock {self.device_id} on {self.hub.access.host}"

    def _new_record(self) -> dict[str, str]:
        now = self._clock()
        return {"holder": self.holder, "since": _iso(now), "expires": _iso(now + self.ttl),
                "nonce": secrets.token_hex(8)}

    def _status(self, call: Callable[[], Any], write: bool) -> tuple[int | None, Any]:
        """Run an SDK call; return ``(None, result)``, or ``(status, None)`` for 404/409/412."""

        def attempt() -> tuple[int | None, Any]:
            try:
                return None, call()
            except Exception as exc:
                status = errors.describe(exc).status
                if status in (404, 409, 412):
                    return status, None
                raise

        result: tuple[int | None, Any] = self.hub.call(attempt, what=self._what(), write=write)
        return result

    # --- take -----------------------------------------------------------------------

    def acquire(self) -> None:
        for _ in range(3):
            record = self._new_record()
            status, _ = self._status(self._creator(_status_reason(record)), write=True)
            if status is None:
                self.record = record
                self._write_tags(record, "*")
                return
            if status != 409:
                raise PermanentProviderError(f"unexpected answer {status} when creating the lock device",
                                             resource=self._what())
            current, etag = self._read()
            if current is None and etag is None:
                continue  # released between our create and our read: try again
            if current is None or not self._expired(current):
                raise self._held(current)  # a device of that name without a record is not ours to take
            if self._take_over(current, etag):
                return
        raise self._held(self._read()[0])

    def _creator(self, status_reason: str) -> Callable[[], Any]:
        """``PUT /devices/{id}``: a disabled, non-edge identity carrying the record in its status reason."""
        return lambda: self.hub.registry.create_device_with_sas(self.device_id, None, None, "disabled",
                                                                iot_edge=False, status_reason=status_reason)

    def _read(self) -> tuple[dict[str, str] | None, str | None]:
        """The current record and the twin's etag; ``(None, None)`` when the device is gone."""
        status, twin = self._status(lambda: self.hub.registry.get_twin(self.device_id), write=False)
        if status == 404:
            return None, None
        record = _from_tags(getattr(twin, "tags", None))
        if record is None:  # created, tag not written yet (or never: that run died in between)
            status, device = self._status(lambda: self.hub.registry.get_device(self.device_id), write=False)
            if status == 404:
                return None, None
            record = _from_status_reason(getattr(device, "status_reason", None))
        return record, str(twin.etag)

    def _expired(self, record: dict[str, str]) -> bool:
        expires = _parse_time(record.get("expires"))
        return expires is None or expires <= self._clock()

    def _take_over(self, previous: dict[str, str] | None, etag: str | None) -> bool:
        record = self._new_record()
        if not self._write_tags(record, etag or "*"):
            return False  # another run took it over first
        self.record = record
        who = f"{previous['holder']} (expired {previous['expires']})" if previous else "an unknown run"
        log.warning("took over the apply lock of environment %s from %s; the plan shows what that run left "
                    "unfinished", self.environment, who)
        return True

    def _write_tags(self, record: dict[str, str], etag: str) -> bool:
        """Conditional ``PATCH /twins/{id}``; False on 412 (someone else wrote first)."""
        from azure.iot.hub.models import Twin

        status, twin = self._status(lambda: self.hub.registry.update_twin(
            self.device_id, Twin(tags={LOCK_TAG: record}), quoted(etag)), write=True)
        if status == 404 and self.record is not None:
            raise LockHeld(f"the apply lock of environment {self.environment} was released by someone else "
                           f"(the device {self.device_id} was deleted); run `reconciler plan` again")
        if status is not None:
            return False
        self._twin_etag = str(twin.etag)
        self._last_expires = record["expires"]
        return True

    # --- hold -----------------------------------------------------------------------

    def renew_if_needed(self) -> None:
        """Extend the expiry once half the time to live is spent. Raises ``LockHeld`` if the lock was lost."""
        if self.record is None:
            return
        expires = _parse_time(self.record["expires"])
        if expires is not None and expires - self._clock() > self.ttl / 2:
            return
        renewed = {**self.record, "expires": _iso(self._clock() + self.ttl)}
        if not self._write_tags(renewed, self._twin_etag or "*"):
            current, _ = self._read()
            self.record = None
            raise LockHeld(f"the apply lock of environment {self.environment} expired and was taken over by "
                           f"{current['holder'] if current else 'another run'}; this apply stopped; run "
                           "`reconciler plan` to see what remains")
        self.record = renewed

    def release(self) -> None:
        if self.record is None:
            return
        nonce = self.record["nonce"]
        self.record = None
        current, _ = self._read()
        if current is not None and current.get("nonce") != nonce:
            log.warning("the apply lock of environment %s is held by %s now; left in place",
                        self.environment, current.get("holder"))
            return
        self._status(lambda: self.hub.registry.delete_device(self.device_id, "*"), write=True)

    def _held(self, record: dict[str, str] | None) -> LockHeld:
        if record is None:
            info = LockInfo("an unknown holder (the lock device carries no record)", "an unknown time")
        else:
            info = LockInfo(record.get("holder") or "an unknown holder", record.get("since") or "an unknown time",
                            record.get("expires"))
        return LockHeld(
            f"another apply holds the lock of environment {self.environment}: {info}. Wait for it to finish and "
            f"try again; if that run died, the lock is taken over once it expires, or delete the device "
            f"identity {self.device_id} from the hub {self.hub.access.host} (az iot hub device-identity delete "
            f"--hub-name <hub> --device-id {self.device_id}).")


@contextmanager
def hold(lock: HubLock) -> Iterator[HubLock]:
    """Hold ``lock`` for the ``with`` block; released even when the block fails. A failed release is
    logged, not raised: it must not hide the block's own error, and the lock expires anyway."""
    lock.acquire()
    try:
        yield lock
    finally:
        try:
            lock.release()
        except ProviderError as exc:
            log.warning("could not release the apply lock of environment %s (%s); it expires at %s",
                        lock.environment, exc, lock.expires or "its expiry")
