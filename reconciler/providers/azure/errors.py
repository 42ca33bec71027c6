"""SDK failures -> ``reconciler.errors``, and the scrubbing that keeps secrets out of messages.

Three SDK families raise here, each its own way:

* azure-iot-hub 2.7 (msrest): ``HttpOperationError`` with a generic message ("Operation returned an invalid
  status code 'Conflict'"); the facts are on ``.response`` (a ``requests.Response``): status, the
  ``iothub-errorcode`` header, the ``{"Message": "ErrorCode:<code>;<text>"}`` body. Transport failures are
  ``ClientRequestError`` wrapping a ``requests`` exception (``inner_exception``).
* azure-mgmt-containerregistry / azure-identity (azure-core): ``HttpResponseError`` (``.status_code``,
  ``.response.headers``, ``.error.code``), ``ServiceRequestError`` (nothing was sent) and
  ``ServiceResponseError`` (sent, no answer); ``CredentialUnavailableError`` when no credential applies.
* azureml-core: msrest errors, ``requests`` errors, or its own exceptions with the HTTP status in the text.

Nothing here imports an SDK: exceptions are recognised by their attributes and class names, so this module
is as cheap as the rest of the provider's top level.

Secrets: a service may echo a request back in an error (content with a registry password, a connection
string in a transport error's URL). Every message built here goes through ``scrub``, which replaces the
values registered with ``register_secret`` and anything shaped like a key, a signature or a password.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from reconciler.errors import PermanentProviderError, ProviderError, TransientProviderError

MAX_SERVICE_MESSAGE = 400
REDACTED = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()

_PATTERNS = [
    (re.compile(r"(SharedAccessKey\s*=\s*)[^;\"'\s]+", re.IGNORECASE), r"\1" + REDACTED),
    (re.compile(r"(SharedAccessSignature\s+)[^\s\"']+", re.IGNORECASE), r"\1" + REDACTED),
    (re.compile(r"(\bsig=)[^&\"'\s]+", re.IGNORECASE), r"\1" + REDACTED),
    (re.compile(r"(\\?\"password\\?\"\s*:\s*\\?\")(?:[^\"\\]|\\.)*?(\\?\")", re.IGNORECASE), r"\1" + REDACTED + r"\2"),
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9\-_.~+/=]+"), r"\1" + REDACTED),
    (re.compile(r"(client_secret=)[^&\s]+", re.IGNORECASE), r"\1" + REDACTED),
    # a password in a URL's user info (a package index in a build log: https://user:token@host/)
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(@)", re.IGNORECASE), r"\1" + REDACTED + r"\2"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret value so that ``scrub`` removes it wherever it shows up."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` without any registered secret and without key-, signature- or password-shaped values."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# --------------------------------------------------------------------------------------------------------------
# What went wrong
# --------------------------------------------------------------------------------------------------------------

HTTP = "http"  # the service answered with an error status
NOT_SENT = "not-sent"  # the request never reached the service (connect failed): safe to repeat
NO_ANSWER = "no-answer"  # sent, but no (complete) answer: a write may or may not have happened
CREDENTIAL = "credential"  # no token could be obtained
OTHER = "other"


@dataclass(frozen=True)
class Failure:
    """An SDK exception, reduced to what the retry layer and the messages need."""

    kind: str
    status: int | None = None
    code: str | None = None  # the service's error code (``iothub-errorcode``, ARM ``error.code``)
    detail: str = ""  # the service's message or the transport error, scrubbed and shortened
    retry_after: float | None = None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (``inner_exception``, causes, contexts), without cycles."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        for attribute in ("inner_exception", "reason"):  # msrest's wrapped error, urllib3's MaxRetryError.reason
            inner = getattr(current, attribute, None)
            todo.append(inner if isinstance(inner, BaseException) else None)
        todo += [current.__cause__, current.__context__]
        if len(seen) > 12:
            break
    return seen


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or the ``*retry-after-ms`` headers."""
    if headers is None:
        return None
    try:
        lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    except (TypeError, ValueError):
        return None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if name in lowered:
            try:
                return max(0.0, float(lowered[name]) / 1000)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _service_message(body: str) -> tuple[str | None, str]:
    """(error code, message) from an error body, in each service's shape: ARM ``{"error": {code, message}}``,
    the ACR data plane's ``{"errors": [{code, message, detail}]}``, Azure ML's ``ModelErrorResponse``
    ``{code, statusCode, message, details}``, IoT Hub's ``{"Message": "ErrorCode:<code>;<text>"}`` (its code
    also comes in the ``iothub-errorcode`` header); the raw text when it is not JSON."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, body.strip()
    if not isinstance(data, dict):
        return None, body.strip()
    error = data.get("error")
    if isinstance(error, dict):
        return error.get("code"), str(error.get("message") or "")
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0].get("code"), str(errors[0].get("message") or "")
    if isinstance(data.get("code"), str) and "statusCode" in data:
        return data["code"], str(data.get("message") or "")
    message = str(data.get("Message") or data.get("message") or "")
    match = re.match(r"ErrorCode:([A-Za-z]+);(.*)", message, re.DOTALL)
    if match:
        return match.group(1), match.group(2)
    return None, message or body.strip()


def _shorten(text: str) -> str:
    text = scrub(" ".join(text.split()))
    return text if len(text) <= MAX_SERVICE_MESSAGE else text[: MAX_SERVICE_MESSAGE - 1] + "…"


def _http_failure(exc: BaseException) -> Failure | None:
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    if not isinstance(status, int) or status < 400:
        return None
    headers = getattr(response, "headers", None)
    code: str | None = None
    detail = ""
    body = ""
    try:
        text = getattr(response, "text", None)
        body = text() if callable(text) else (text or "")
    except Exception:  # noqa: BLE001 - an unreadable body must not hide the status
        body = ""
    if body:
        code, detail = _service_message(str(body))
    error = getattr(exc, "error", None)  # azure-core's parsed ODataV4Format
    code = code or getattr(error, "code", None)
    detail = detail or str(getattr(error, "message", "") or "")
    try:
        header_code = dict(headers or {}).get("iothub-errorcode")
    except (TypeError, ValueError):
        header_code = None
    code = header_code or code
    return Failure(HTTP, status, _shorten(str(code)) if code else None, _shorten(detail),
                   parse_retry_after(headers))


_NOT_SENT = {"ConnectTimeout", "ConnectTimeoutError", "NewConnectionError",
             "ConnectionRefusedError", "NameResolutionError", "gaierror"}
_NO_ANSWER = {"ServiceResponseError", "ReadTimeout", "ReadTimeoutError", "RemoteDisconnected", "IncompleteRead",
              "ConnectionResetError", "ChunkedEncodingError", "ProtocolError", "BrokenPipeError"}
# Wrappers that say little by themselves: requests' ConnectionError covers refused connects too, and urllib3
# reports a connection reset inside an HTTPS proxy tunnel, after the request was sent, as a ProxyError, which
# azure-core wraps in a ServiceRequestError ("not sent"): a RemoteDisconnected under it says otherwise.
_WRAPPERS = {"ConnectionError": NO_ANSWER, "ClientRequestError": NO_ANSWER, "Timeout": NO_ANSWER,
             "TimeoutError": NO_ANSWER, "ProxyError": NOT_SENT, "ServiceRequestError": NOT_SENT}


def _transport_kind(chain: list[BaseException]) -> str | None:
    """NOT_SENT only when something in the chain proves the request never left (a refused or timed-out
    connect); NO_ANSWER when something shows it was sent and the answer broke off; else what the
    wrappers suggest."""
    names = set().union(*(_names(exc) for exc in chain))
    if names & _NOT_SENT:
        return NOT_SENT
    if names & _NO_ANSWER:
        return NO_ANSWER
    kinds = {kind for name, kind in _WRAPPERS.items() if name in names}
    if kinds:
        return NO_ANSWER if NO_ANSWER in kinds else NOT_SENT
    return None


def describe(exc: BaseException) -> Failure:
    """Classify an exception raised by an SDK call."""
    chain = _chain(exc)
    for current in chain:
        failure = _http_failure(current)
        if failure is not None:
            return failure
    for current in chain:
        if _names(current) & {"CredentialUnavailableError"} or (
            "ClientAuthenticationError" in _names(current) and getattr(current, "status_code", None) is None
        ):
            return Failure(CREDENTIAL, detail=_shorten(str(current)))
    kind = _transport_kind(chain)
    if kind is not None:
        return Failure(kind, detail=_shorten(f"{type(chain[-1]).__name__}: {chain[-1]}"))
    status = _status_in_text(str(exc))
    if status is not None:  # azureml's WebserviceException: "Response Code: 404"
        return Failure(HTTP, status, None, _shorten(str(exc)))
    return Failure(OTHER, detail=_shorten(f"{type(exc).__name__}: {exc}"))


def _status_in_text(text: str) -> int | None:
    match = re.search(r"(?:Response Code|status code|StatusCode)\D{0,4}(\d{3})\b", text, re.IGNORECASE)
    return int(match.group(1)) if match and 400 <= int(match.group(1)) <= 599 else None


# --------------------------------------------------------------------------------------------------------------
# What to tell the user
# --------------------------------------------------------------------------------------------------------------

CREDENTIAL_ADVICE = (
    "check the credentials: the IoT Hub connection string in the variable environment.yaml names, or the Azure "
    "identity (az login, a managed identity, or AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_CLIENT_SECRET)"
)
ROLE_ADVICE = (
    "the identity is not allowed to do this: check its role assignments (IoT Hub: \"IoT Hub Data Contributor\" "
    "or a shared access policy with registry write and service connect; registry: \"Contributor\" to manage "
    "tokens and scope maps; workspace: \"AzureML Data Scientist\"); role changes take a few minutes to apply"
)

_CODE_ADVICE = {
    "CannotModifyImmutableConfigurationContent": (
        "IoT Hub refused to change a deployment's content, which is immutable; run `reconciler plan` again: a "
        "content change is planned as a replace under a new id"),
    "ConfigurationCountLimitExceeded": (  # 413101, the hub's documented code for this limit
        "the hub is at its limit of deployments (100 on standard hubs, layered ones included); delete unused "
        "deployments or apply with --prune"),
    "InvalidConfigurationTargetCondition": (
        "IoT Hub refused the target condition; use only tags.*, properties.reported.* and deviceId, single "
        "quotes, and OR instead of IN"),
    "AdminUserDisabled": (
        "the registry's admin user is disabled; enable it (az acr update --name <acr> --admin-enabled true) or "
        "use `credentials: scopedToken` in environment.yaml"),
}


def advice(failure: Failure, what: str) -> str:
    """What the user should do about a permanent failure."""
    if failure.code in _CODE_ADVICE:
        return _CODE_ADVICE[failure.code]
    status = failure.status
    if failure.kind == CREDENTIAL or status == 401:
        return CREDENTIAL_ADVICE
    if status == 403:
        return ROLE_ADVICE
    if status == 404:
        return (f"{what} was not found: check the names in environment.yaml (subscription, resource groups, "
                "workspace, registry, IoT Hub host name), or run `reconciler plan` again if it was just deleted")
    if status == 409:
        return ("it conflicts with the resource as it exists now (it exists already, or another run or a person "
                "changed it meanwhile); run `reconciler plan` again")
    if status == 412:
        return ("it changed since it was read (the etag no longer matches): another run or a person modified it; "
                "run `reconciler plan` again")
    if status is not None and 400 <= status < 500:
        return "the service refused the request; fix what its message names and apply again"
    if failure.kind == OTHER:
        return "unexpected error from the Azure SDK (report it with the command you ran)"
    return "retry later"


def summary(failure: Failure) -> str:
    if failure.kind == HTTP:
        text = f"HTTP {failure.status}"
        if failure.code:
            text += f" {failure.code}"
        return f"{text}: {failure.detail}" if failure.detail else text
    if failure.kind == NOT_SENT:
        return f"could not reach the service ({failure.detail})"
    if failure.kind == NO_ANSWER:
        return f"the service did not answer ({failure.detail})"
    if failure.kind == CREDENTIAL:
        return f"no Azure token could be obtained ({failure.detail})"
    return failure.detail


def is_throttled(failure: Failure) -> bool:
    return failure.status == 429 or failure.code in ("ThrottlingException", "ServerBusy", "TooManyRequests")


def is_transient(failure: Failure) -> bool:
    """Whether the same call may succeed later (for any kind of call)."""
    if failure.kind in (NOT_SENT, NO_ANSWER):
        return True
    status = failure.status
    return failure.kind == HTTP and status is not None and (
        is_throttled(failure) or status == 408 or (status >= 500 and status not in (501, 505)))


def to_provider_error(exc: BaseException, what: str, *, attempts: int = 1,
                      ambiguous_write: bool = False) -> ProviderError:
    """The ``reconciler.errors`` exception for an SDK failure (the caller raises it ``from exc``)."""
    if isinstance(exc, ProviderError):
        return exc
    failure = describe(exc)
    tried = f" (after {attempts} attempts)" if attempts > 1 else ""
    if is_transient(failure):
        if ambiguous_write:
            hint = ("the change may or may not have been made; run `reconciler plan` to see what remains, "
                    "then apply again")
        elif is_throttled(failure):
            hint = "Azure is throttling requests; wait a minute and try again"
        else:
            hint = "the service is unavailable or unreachable; try again later"
        return TransientProviderError(f"{summary(failure)}{tried}; {hint}", resource=what,
                                      retry_after=failure.retry_after)
    return PermanentProviderError(f"{summary(failure)}; {advice(failure, what)}", resource=what)
