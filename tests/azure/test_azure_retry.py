"""The retry layer and the error mapping of the Azure provider, with the SDKs' real exception classes and a
fake clock (no emulator, no sleeping)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from msrest.exceptions import ClientRequestError, HttpOperationError

from reconciler.errors import LockHeld, PermanentProviderError, TransientProviderError
from reconciler.providers.azure import errors
from reconciler.providers.azure.retry import Pacer, Retrier, RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def retrier(clock: Clock, **policy: Any) -> Retrier:
    return Retrier(RetryPolicy(**policy), sleep=clock.sleep, clock=clock, pacer=Pacer(clock, clock.sleep),
                   rng=random.Random(1))


def msrest_error(status: int, body: str = "", **headers: str) -> HttpOperationError:
    """What azure-iot-hub raises: ``HttpOperationError`` over a ``requests.Response``."""
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    response.headers.update(headers)
    error = HttpOperationError.__new__(HttpOperationError)
    Exception.__init__(error, f"Operation returned an invalid status code '{status}'")
    error.response = response
    error.error = None
    return error


class FakeCoreResponse:
    def __init__(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}
        self.reason = "reason"
        self._body = body

    def text(self, encoding: str | None = None) -> str:
        return self._body

    def body(self) -> bytes:
        return self._body.encode()


def core_error(status: int, body: str = "", **headers: str) -> HttpResponseError:
    """What azure-mgmt-containerregistry raises."""
    return HttpResponseError(response=FakeCoreResponse(status, body, headers))  # type: ignore[arg-type]


def failing(*failures: BaseException, result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if calls[0] <= len(failures):
            raise failures[calls[0] - 1]
        return result

    return fn, calls


def test_throttling_is_retried_after_the_retry_after_the_service_asks_for() -> None:
    clock = Clock()
    fn, calls = failing(msrest_error(429, '{"Message":"ErrorCode:ThrottlingException;slow down"}', **{
        "Retry-After": "4"}), core_error(429, '{"error":{"code":"TooManyRequests","message":"x"}}',
                                        **{"retry-after-ms": "1500"}))
    retry = retrier(clock)
    assert retry.call(fn, what="deployments", write=True) == "ok"
    assert calls == [3]
    assert 4 <= clock.sleeps[0] <= 4.4 and 1.5 <= clock.sleeps[1] <= 1.65
    assert (retry.stats.attempts, retry.stats.retries) == (3, 2)


def test_backoff_grows_with_jitter_and_attempts_are_bounded() -> None:
    clock = Clock()
    fn, calls = failing(*[core_error(503)] * 10)
    with pytest.raises(TransientProviderError) as raised:
        retrier(clock, attempts=4).call(fn, what="registry", write=False)
    assert calls == [4] and len(clock.sleeps) == 3
    for attempt, slept in enumerate(clock.sleeps):
        assert 0.5 * 2**attempt <= slept <= 2**attempt
    assert "after 4 attempts" in str(raised.value) and str(raised.value).startswith("registry: HTTP 503")


def test_the_deadline_stops_retries_and_the_error_keeps_retry_after() -> None:
    clock = Clock()
    fn, calls = failing(*[msrest_error(429, **{"Retry-After": "40"})] * 10)
    with pytest.raises(TransientProviderError) as raised:
        retrier(clock, deadline=100).call(fn, what="x", write=False)
    assert calls == [3] and raised.value.retry_after == 40


def test_scale_shrinks_every_wait() -> None:
    clock = Clock()
    fn, _ = failing(msrest_error(429, **{"Retry-After": "10"}))
    retrier(clock, scale=0.01).call(fn, what="x", write=False)
    assert clock.sleeps[0] <= 0.11


def test_writes_are_not_repeated_when_they_may_have_happened() -> None:
    for failure in (msrest_error(500), ServiceResponseError("connection reset after the request was sent")):
        clock = Clock()
        fn, calls = failing(failure)
        with pytest.raises(TransientProviderError, match="may or may not have been made"):
            retrier(clock).call(fn, what="deployment a-1", write=True)
        assert calls == [1]
    clock = Clock()
    fn, calls = failing(msrest_error(500), ServiceRequestError("connect refused"))
    assert retrier(clock).call(fn, what="deployment a-1", write=False) == "ok" and calls == [3]
    fn, calls = failing(ServiceRequestError("connect refused"))  # never sent: safe for a write too
    assert retrier(clock).call(fn, what="deployment a-1", write=True) == "ok" and calls == [2]


def test_transport_errors_wrapped_by_msrest_are_recognised() -> None:
    inner = requests.exceptions.ConnectTimeout("timed out connecting")
    wrapped = ClientRequestError("Error occurred in request.", inner_exception=inner)
    assert errors.describe(wrapped).kind == errors.NOT_SENT
    read = ClientRequestError("Error occurred in request.", inner_exception=requests.exceptions.ReadTimeout("x"))
    assert errors.describe(read).kind == errors.NO_ANSWER


@pytest.mark.parametrize(("status", "body", "expected"), [
    (401, "", "check the credentials"),
    (403, '{"error":{"code":"AuthorizationFailed","message":"no"}}', "check its role assignments"),
    (404, '{"error":{"code":"ResourceNotFound","message":"gone"}}', "deployment x-1 was not found"),
    (409, '{"Message":"ErrorCode:ConfigurationAlreadyExists;exists"}', "run `reconciler plan` again"),
    (412, '{"Message":"ErrorCode:PreconditionFailed;etag"}', "etag no longer matches"),
    (400, '{"Message":"ErrorCode:CannotModifyImmutableConfigurationContent;no"}', "content, which is immutable"),
    (413, '{"Message":"ErrorCode:ConfigurationCountLimitExceeded;100"}', "at its limit of deployments"),
])
def test_permanent_errors_say_what_to_do(status: int, body: str, expected: str) -> None:
    fn, calls = failing(msrest_error(status, body))
    with pytest.raises(PermanentProviderError) as raised:
        retrier(Clock()).call(fn, what="deployment x-1", write=True)
    assert calls == [1] and expected in str(raised.value)
    assert str(raised.value).startswith(f"deployment x-1: HTTP {status}")
    assert isinstance(raised.value.__cause__, HttpOperationError)


@pytest.mark.parametrize(("body", "code", "detail"), [
    ('{"error":{"code":"ResourceNotFound","message":"gone"}}', "ResourceNotFound", "gone"),  # ARM
    ('{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":null}]}',
     "NAME_UNKNOWN", "repository name not known to registry"),  # ACR data plane
    ('{"code":"ModelNotFound","statusCode":404,"message":"no such model","details":[]}', "ModelNotFound",
     "no such model"),  # Azure ML ModelErrorResponse
    ('{"Message":"ErrorCode:DeviceNotFound;no device","ExceptionMessage":"Tracking ID:x"}', "DeviceNotFound",
     "no device"),  # IoT Hub
])
def test_error_bodies_are_read_in_each_services_shape(body: str, code: str, detail: str) -> None:
    failure = errors.describe(core_error(404, body))
    assert (failure.status, failure.code, failure.detail) == (404, code, detail)


def test_reconciler_errors_pass_through_untouched() -> None:
    held = LockHeld("someone")
    fn, _ = failing(held)
    with pytest.raises(LockHeld) as raised:
        retrier(Clock()).call(fn, what="x", write=True)
    assert raised.value is held


def test_secrets_are_scrubbed_from_messages() -> None:
    errors.register_secret("s3cr3t-password-value")
    body = ('{"Message":"ErrorCode:ArgumentInvalid;bad {\\"password\\": \\"other-secret\\"} '
            'HostName=h;SharedAccessKeyName=o;SharedAccessKey=abcDEF123== sr=h&sig=XYZ%3D&se=1 '
            's3cr3t-password-value Bearer eyJhbGciOi.abc.def"}')
    fn, _ = failing(msrest_error(400, body))
    with pytest.raises(PermanentProviderError) as raised:
        retrier(Clock()).call(fn, what="x", write=True)
    text = str(raised.value)
    for secret in ("other-secret", "abcDEF123", "XYZ%3D", "s3cr3t-password-value", "eyJhbGciOi"):
        assert secret not in text
    assert "SharedAccessKey=***" in text


def test_retry_after_as_an_http_date() -> None:
    assert errors.parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert errors.parse_retry_after({"Retry-After": "soon"}) is None
    assert errors.parse_retry_after(None) is None


def test_paced_writes_are_spaced_per_key() -> None:
    clock = Clock()
    retry = retrier(clock, write_interval=3)
    for _ in range(3):
        retry.call(lambda: None, what="w", write=True, pace="iothub:a")
    retry.call(lambda: None, what="w", write=True, pace="iothub:b")
    assert clock.sleeps == [3, 3] and clock.now == 6


def test_the_scale_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_RETRY_SCALE", "0.5")
    assert RetryPolicy.from_env().scale == 0.5
    monkeypatch.setenv("RECONCILER_RETRY_SCALE", "fast")
    assert RetryPolicy.from_env().scale == 1.0
