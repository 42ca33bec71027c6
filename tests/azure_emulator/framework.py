"""The plug-in seam of the Azure emulator: how a service module declares its routes.

The emulator is one HTTPS MITM proxy on 127.0.0.1 (see ``server.py``). The real, unpatched
SDK clients reach it through ``HTTPS_PROXY`` and trust it through ``REQUESTS_CA_BUNDLE``;
every request it terminates is dispatched by host and path to a ``Route`` declared by one
of the service modules (``iothub.py``, ``arm.py``, ``acr.py``, ``aml.py``). Services keep
their state on the shared ``EmulatorState`` so that, e.g., the ACR module and the AML
package builder see the same images.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    host: str  # without port, lower case, e.g. "management.azure.com"
    path: str  # decoded path without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # header names lower case
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the path regex

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    @staticmethod
    def parse_query(raw: str) -> dict[str, list[str]]:
        return parse_qs(raw, keep_blank_values=True)


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> raw; None -> empty
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.body is None:
            payload = b""
        elif isinstance(self.body, bytes):
            payload = self.body
        else:
            payload = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        headers["Content-Length"] = str(len(payload))
        return payload, headers


def error(status: int, code: str, message: str, **headers: str) -> Response:
    """The ARM error envelope, ``{"error": {"code", "message"}}`` (azure-rest-api-specs common-types
    ``ErrorResponse``). IoT Hub, the ACR data plane and Azure ML have shapes of their own
    (``service_errors``)."""
    return Response(status, {"error": {"code": code, "message": message}}, headers)


Handler = Callable[[Request, "EmulatorState"], Response]

#: A service module's step around the routes, for behaviour that spans many routes of a host (ARM's
#: throttling of a subscription's reads, ``arm.throttle_subscription_reads``): called with the request, the
#: state and ``answer`` (the next step: the routes), it returns the response, its own or ``answer``'s. Service
#: modules list theirs in ``MIDDLEWARE`` beside ``ROUTES``; the server runs them in the order loaded, after
#: the injected faults and before the routes.
Middleware = Callable[[Request, "EmulatorState", Callable[[Request], Response]], Response]

#: Called with every request the emulator answers and the response it gives (faults included), from the
#: server's threads, before the answer is sent. The test suite's contract check (``contract.py``) hooks in
#: here; an observer must not raise.
response_observers: list[Callable[[Request, Response], None]] = []


@dataclass(frozen=True)
class Route:
    method: str
    host: str  # regex matched against Request.host (full match)
    path: str  # regex matched against Request.path (full match); named groups -> Request.params
    handler: Handler

    def match(self, request: Request) -> dict[str, str] | None:
        if request.method != self.method or not re.fullmatch(self.host, request.host):
            return None
        m = re.fullmatch(self.path, request.path)
        return m.groupdict() if m else None


@dataclass
class EmulatorState:
    """Everything the emulated services hold. Service modules own their sub-dicts."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)

    def service(self, name: str) -> dict[str, Any]:
        with self.lock:
            return self.services.setdefault(name, {})
