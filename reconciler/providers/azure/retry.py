"""One wrapper for every SDK call: retries, backoff, pacing, error mapping, call counting.

Why our own layer: the SDKs disagree and none is enough. azure-iot-hub (msrest) never retries a 429 without
``Retry-After`` and never retries POST/PATCH; azure-core retries up to 10 times with its own budget; neither
knows that IoT Hub allows about 20 configuration operations per minute per unit. The provider turns the SDKs'
own retries off (``AzureClients``) so that this module is the only place that decides, and so that the
emulator's request log counts real calls.

Rules:

* Retried: 429 / ``ThrottlingException`` / ``ServerBusy`` and 503 (the service did not do the work), and
  requests that never left the machine (connect failures), for any call; other 5xx, 408, timeouts and lost
  answers for reads (``write=False``).
* Writes whose answer is lost (no answer, a timeout, a 5xx other than 503: the write may have happened) are
  repeated only when the caller made that safe, never blindly: ``repeatable=True`` says the operation
  recognises its own earlier success when sent again (a create that takes "exists, with our content" as
  done, a delete that takes 404 as done, a conditional write that reads back what it wrote); ``recover`` is
  a read that finds the write's effect (the model version with this fingerprint, the image with this
  label) and returns it, or None when the write did not happen and may be sent again. Any other write whose
  answer is lost fails with an error that says to re-plan.
* Waits: ``Retry-After`` (seconds or a date; also ``retry-after-ms``) when the service sends it, else
  exponential backoff (1, 2, 4, ... s, at most ``max_delay``) with jitter; bounded by ``attempts`` and by a
  total ``deadline``. Throttled answers that carry ``Retry-After`` count against ``throttled_attempts``
  instead (50): the service is pacing the client, and ARM's read bucket refuses a read several times in a row
  when many are in flight. ``RECONCILER_RETRY_SCALE`` (or ``RetryPolicy.scale``) multiplies every wait: tests
  run with a tiny scale.
* Pacing: IoT Hub configuration writes are spaced by ``write_interval`` (3 s, i.e. at most 20 per minute,
  one hub unit's quota) per hub and process, scaled like the waits.
* Failures become ``TransientProviderError`` (with ``retry_after``) or ``PermanentProviderError``, raised
  ``from`` the SDK exception, with secrets scrubbed (``errors.scrub``).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from reconciler.errors import ReconcilerError
from reconciler.providers.azure import errors

T = TypeVar("T")

SCALE_VARIABLE = "RECONCILER_RETRY_SCALE"

log = logging.getLogger("reconciler.providers.azure")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    # A throttled answer that says when to come back (429 / ThrottlingException with ``Retry-After``) is the
    # service pacing the client, not a failure: such answers have their own, larger count. Reads that outrun a
    # token bucket's refill (ARM: 250 reads, 25 a second) are refused several times in a row before one passes.
    throttled_attempts: int = 50
    base_delay: float = 1.0
    max_delay: float = 60.0
    deadline: float = 300.0  # seconds, all attempts and waits of one call together
    scale: float = 1.0  # multiplies every wait (backoff, Retry-After, pacing)
    write_interval: float = 3.0  # between two IoT Hub configuration writes

    @classmethod
    def from_env(cls, **overrides: Any) -> RetryPolicy:
        """The default policy, scaled by ``RECONCILER_RETRY_SCALE`` when it is set to a number >= 0."""
        policy = cls()
        raw = os.environ.get(SCALE_VARIABLE)
        if raw:
            try:
                scale = float(raw)
            except ValueError:
                scale = -1.0
            if scale >= 0:
                policy = replace(policy, scale=scale)
            else:
                log.warning("%s=%r is not a number >= 0; ignored", SCALE_VARIABLE, raw)
        return replace(policy, **overrides) if overrides else policy


@dataclass
class CallStats:
    """What the provider cost: SDK calls (attempts), HTTP requests seen by the SDK hooks, retries, waits."""

    attempts: int = 0
    retries: int = 0
    recovered: int = 0  # writes whose answer was lost, found done by their ``recover`` look-up
    waited: float = 0.0
    throttled: int = 0  # retries after a throttled answer with Retry-After (the service pacing the client)
    throttled_wait: float = 0.0  # seconds waited for them
    http: Counter[str] = field(default_factory=Counter)  # service -> HTTP responses received
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_http(self, service: str) -> None:
        with self._lock:
            self.http[service] += 1

    @property
    def http_total(self) -> int:
        return sum(self.http.values())

    def _attempt(self) -> None:
        with self._lock:
            self.attempts += 1

    def _recovered(self) -> None:
        with self._lock:
            self.recovered += 1

    def _throttled(self, delay: float) -> int:
        """Count a throttled answer's retry; returns how many this run has had."""
        with self._lock:
            self.throttled += 1
            self.throttled_wait += delay
            return self.throttled

    def _retry(self, delay: float) -> None:
        with self._lock:
            self.retries += 1
            self.waited += delay


class Pacer:
    """Spaces calls that share a key (one per hub) by a minimum interval, across threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def wait(self, key: str, interval: float) -> None:
        if interval <= 0:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next.get(key, now))
            self._next[key] = start + interval
        if start > now:
            self._sleep(start - now)


PACER = Pacer()


def _retryable(failure: errors.Failure, write: bool) -> bool:
    if failure.kind == errors.NOT_SENT or errors.is_throttled(failure) or failure.status == 503:
        return True
    return not write and errors.is_transient(failure)


def _ambiguous(failure: errors.Failure, write: bool) -> bool:
    """A write whose outcome is unknown: sent, and answered with a server error or not at all."""
    return write and (failure.kind == errors.NO_ANSWER
                      or (failure.status is not None and failure.status >= 500 and failure.status != 503))


class Retrier:
    """The retry loop with its policy and counters. ``policy=None`` reads the environment at each call."""

    def __init__(self, policy: RetryPolicy | None = None, stats: CallStats | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 pacer: Pacer | None = None, rng: random.Random | None = None) -> None:
        self._policy = policy
        self.stats = stats or CallStats()
        self._sleep = sleep
        self._clock = clock
        self._pacer = pacer or PACER
        self._random = rng or random.Random()

    @property
    def policy(self) -> RetryPolicy:
        return self._policy or RetryPolicy.from_env()

    def delay(self, failure: errors.Failure, attempt: int, policy: RetryPolicy) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if failure.retry_after is not None:
            seconds = failure.retry_after * (1 + 0.1 * self._random.random())
        else:
            seconds = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)) * self._random.uniform(0.5, 1)
        return seconds * policy.scale

    def call(self, fn: Callable[[], T], *, what: str, write: bool, pace: str | None = None,
             repeatable: bool = False, recover: Callable[[], T | None] | None = None) -> T:
        """``fn()`` under the rules in the module docstring. ``what`` names the resource for messages;
        ``pace`` is the pacing key of a paced write (``"iothub:<host>"``); ``repeatable`` and ``recover``
        make a write whose answer was lost safe to send again."""
        policy = self.policy
        started = self._clock()
        attempt = 0
        paced = 0  # throttled answers with a Retry-After: they count against ``throttled_attempts`` instead
        while True:
            attempt += 1
            if pace is not None:
                self._pacer.wait(pace, policy.write_interval * policy.scale)
            self.stats._attempt()
            try:
                return fn()
            except ReconcilerError:
                raise
            except Exception as exc:  # noqa: BLE001 - the provider boundary: nothing else may escape
                failure = errors.describe(exc)
                safe_again = repeatable or recover is not None
                if _ambiguous(failure, write) and recover is not None:
                    log.warning("%s: %s; the write may have happened: looking it up", what, errors.summary(failure))
                    found = self.call(recover, what=what, write=False)
                    if found is not None:
                        self.stats._recovered()
                        return found
                retryable = _retryable(failure, write) or (safe_again and errors.is_transient(failure))
                pacing = errors.is_throttled(failure) and failure.retry_after is not None
                if pacing:
                    paced += 1
                    last = paced >= policy.throttled_attempts or attempt - paced >= policy.attempts
                else:
                    last = attempt - paced >= policy.attempts
                last = last or not retryable
                delay = 0.0 if last else self.delay(failure, attempt - paced or 1, policy)
                if not last and self._clock() - started + delay > policy.deadline:
                    last = True
                if last:
                    raise errors.to_provider_error(exc, what, attempts=attempt,
                                                   ambiguous_write=_ambiguous(failure, write)) from exc
                if not pacing:
                    log.warning("%s: %s; retrying in %.1f s (attempt %d)", what, errors.summary(failure), delay,
                                attempt + 1)
                elif self.stats._throttled(delay) == 1:  # the first of the run: the others are counted, not logged
                    log.warning("%s: %s; retrying in %.1f s as asked (the run's further throttled requests are waited "
                                "out the same way and counted, not logged)", what, errors.summary(failure), delay)
                else:
                    log.info("%s: %s; retrying in %.1f s (attempt %d)", what, errors.summary(failure), delay,
                             attempt + 1)
                self.stats._retry(delay)
                self._sleep(delay)


_default = Retrier()


def call(fn: Callable[[], T], *, what: str, write: bool, pace: str | None = None, repeatable: bool = False,
         recover: Callable[[], T | None] | None = None) -> T:
    """``Retrier.call`` with the environment's policy: for adapters that have no ``Retrier`` of their own."""
    return _default.call(fn, what=what, write=write, pace=pace, repeatable=repeatable, recover=recover)
