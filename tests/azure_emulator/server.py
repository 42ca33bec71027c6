"""The Azure emulator used by the tests: one threaded HTTP server on 127.0.0.1.

It serves three kinds of traffic on the same ephemeral port:

* ``CONNECT host:443`` (clients with ``HTTPS_PROXY=http://127.0.0.1:PORT``): the emulator
  answers 200, terminates TLS with a leaf certificate for *host* issued by a test CA
  (``trustme``), then reads HTTP/1.1 requests from the tunnel (keep-alive) and dispatches them
  with ``Request.host = host``. This is how the real, unpatched SDKs reach
  ``*.azure-devices.net``, ``management.azure.com``, ``*.blob.core.windows.net`` ... offline.
* plain HTTP sent directly to ``http://127.0.0.1:PORT`` (host taken from the ``Host`` header,
  or from an absolute-form request target);
* TLS sent directly to ``https://127.0.0.1:PORT`` (detected by peeking at the first byte;
  the certificate is chosen by SNI and covers ``127.0.0.1`` and ``localhost``).

Requests are dispatched to the first matching ``Route`` (see ``framework.py``); service
modules (``iothub``, ``arm``, ``acr``, ``aml``) plug in by exposing ``ROUTES``, and may wrap the routes in
``MIDDLEWARE`` (``arm``: the opt-in throttling of a subscription's reads).

Run by hand::

    python -m tests.azure_emulator.server --port 0     # prints the environment to export
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import unquote, urlsplit

import trustme

from .framework import EmulatorState, Middleware, Request, Response, Route, error, response_observers
from .service_errors import service_error

#: Service modules loaded by default (each may be absent: another helper writes some of them).
DEFAULT_SERVICE_MODULES = ("iothub", "arm", "acr", "aml", "aml_v2", "acr_tasks")

#: Idle time after which a keep-alive connection is closed by the server.
IDLE_TIMEOUT_S = 60.0
MAX_LINE = 65536
MAX_HEADERS = 200


# --------------------------------------------------------------------------- certificates


class CertificateAuthority:
    """A ``trustme`` CA plus one cached server ``SSLContext`` per host name."""

    def __init__(self, directory: str) -> None:
        self._ca = trustme.CA(organization_name="edge-reconciler azure emulator")
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self.bundle_path = os.path.join(directory, "emulator-ca.pem")
        self._ca.cert_pem.write_to_path(self.bundle_path)

    def context_for(self, host: str) -> ssl.SSLContext:
        """Server context whose leaf certificate names *host* (issued on first use)."""
        host = (host or "localhost").lower()
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                identities = [host]
                if host in ("127.0.0.1", "localhost"):
                    identities = ["127.0.0.1", "localhost"]
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.set_alpn_protocols(["http/1.1"])
                self._ca.issue_cert(*identities).configure_cert(ctx)
                self._contexts[host] = ctx
            return ctx

    def direct_context(self) -> ssl.SSLContext:
        """Context for TLS sent straight to the port: picks the certificate by SNI."""
        ctx = self.context_for("127.0.0.1")

        def pick(sock: ssl.SSLObject, server_name: str, _ctx: ssl.SSLContext) -> None:
            if server_name:
                sock.context = self.context_for(server_name)

        ctx.sni_callback = pick
        return ctx


# --------------------------------------------------------------------------- request log


class Call(NamedTuple):
    """One logged request: ``(method, host, path, query, status, lost)``; status 0 = dropped before the
    service acted; ``lost``: the service acted (``status`` is its answer) but the answer never reached the
    client."""

    method: str
    host: str
    path: str
    query: dict[str, list[str]]
    status: int
    lost: bool = False


class RequestLog:
    """Thread-safe log of every dispatched request (CONNECT tunnels are kept apart)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[Call, Request]] = []
        self.tunnels: list[str] = []  # "host:port" of every CONNECT

    def record(self, request: Request, status: int, lost: bool = False) -> None:
        call = Call(request.method, request.host, request.path, request.query, status, lost)
        with self._lock:
            self._entries.append((call, request))

    def record_tunnel(self, authority: str) -> None:
        with self._lock:
            self.tunnels.append(authority)

    def _select(self, method: str | None, host: str | None, path_contains: str | None) -> list[tuple[Call, Request]]:
        with self._lock:
            entries = list(self._entries)
        return [
            (call, req)
            for call, req in entries
            if (method is None or call.method == method.upper())
            and (host is None or call.host == host.lower() or re.fullmatch(host, call.host))
            and (path_contains is None or path_contains in call.path)
        ]

    def calls(self, method: str | None = None, host: str | None = None, path_contains: str | None = None) -> list[Call]:
        """Logged calls, filtered; *host* is an exact host or a full-match regex."""
        return [call for call, _ in self._select(method, host, path_contains)]

    def requests(
        self, method: str | None = None, host: str | None = None, path_contains: str | None = None
    ) -> list[Request]:
        """Like ``calls`` but the full ``Request`` objects (headers, body) for detailed asserts."""
        return [req for _, req in self._select(method, host, path_contains)]

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
            self.tunnels.clear()

    def __iter__(self) -> Iterator[Call]:
        return iter(self.calls())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# --------------------------------------------------------------------------- fault injection


@dataclass
class FaultRule:
    """Answer some matching requests with an error, a delay, or a dropped connection, or lose the answer.

    Two families of faults, because clients must treat them differently:

    * *before the service acts* (``status``, ``drop``, ``latency``): nothing happened; repeating the request
      is always safe.
    * *after the service acts* (``lose_answer``, ``late``): the route handler runs and the state changes,
      then the connection is reset without an answer (``lose_answer``), or the answer is held back ``late``
      seconds, past the client's read timeout, before it is sent. This is what a reset connection or a
      timeout after a write looks like to a client: it cannot tell whether the write happened.

    Which matching requests are hit is deterministic: every ``every``-th match (counting from
    1), or a ``percent`` chance drawn from a ``random.Random(seed)`` owned by the rule, or (if
    neither is set) every match. ``times`` caps the number of injections, ``skip`` lets the first
    N matches through untouched.
    """

    method: str | None = None  # regex, full match: "PUT" or "PUT|POST|PATCH|DELETE"
    path: str | None = None  # regex, searched in the decoded path
    host: str | None = None  # regex, full match against the host
    status: int | None = None  # e.g. 429, 500, 503; None = no error (latency only)
    retry_after: float | None = None  # seconds, sent as Retry-After
    latency: float = 0.0  # seconds to sleep before answering (or before dispatching)
    drop: bool = False  # close the socket without answering, before the service acts
    lose_answer: bool = False  # the service acts, then the socket is closed without an answer
    late: float = 0.0  # the service acts, then its answer waits this many seconds before it is sent
    every: int | None = None
    percent: float | None = None
    times: int | None = None
    skip: int = 0
    seed: int = 0
    code: str | None = None  # error code in the body / iothub-errorcode header
    matched: int = 0  # counters, for assertions
    injected: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        if self.method:
            self.method = self.method.upper()

    def matches(self, request: Request) -> bool:
        return (
            (self.method is None or re.fullmatch(self.method, request.method) is not None)
            and (self.host is None or re.fullmatch(self.host, request.host) is not None)
            and (self.path is None or re.search(self.path, request.path) is not None)
        )

    def fires(self) -> bool:
        """Count one match and decide whether this one is hit (caller holds the lock)."""
        self.matched += 1
        if self.matched <= self.skip or (self.times is not None and self.injected >= self.times):
            return False
        n = self.matched - self.skip
        if self.every is not None:
            hit = n % self.every == 0
        elif self.percent is not None:
            hit = self._rng.random() * 100.0 < self.percent
        else:
            hit = True
        if hit:
            self.injected += 1
        return hit

    def response(self, request: Request) -> Response:
        """The fault as the request's service answers errors (``service_errors``)."""
        assert self.status is not None
        headers = {"Retry-After": _format_seconds(self.retry_after)} if self.retry_after is not None else {}
        return service_error(request, self.status, self.code, f"Injected fault ({self.status})", **headers)


def _format_seconds(value: float) -> str:
    """Whole seconds, as the services send them (urllib3 rejects fractional Retry-After)."""
    return str(math.ceil(value))


@dataclass
class FaultOutcome:
    latency: float = 0.0
    drop: bool = False
    response: Response | None = None
    lose_answer: bool = False
    late: float = 0.0


class Faults:
    """The set of active fault rules. ``emulator.faults.add(...)`` / ``.clear()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []

    def add(self, **kwargs: Any) -> FaultRule:
        """Add a rule; kwargs are the ``FaultRule`` fields. Returns it (inspect ``.injected``)."""
        rule = FaultRule(**kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def throttle(self, retry_after: float = 1, **kwargs: Any) -> FaultRule:
        """Shortcut: 429 ThrottlingException with Retry-After."""
        return self.add(status=429, retry_after=retry_after, **kwargs)

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def lose_answers(self, percent: float | None = None, seed: int = 0, **kwargs: Any) -> FaultRule:
        """Shortcut: the service acts, the answer is lost (every match, or ``percent`` of them)."""
        return self.add(lose_answer=True, percent=percent, seed=seed, **kwargs)

    def evaluate(self, request: Request) -> FaultOutcome:
        """Latencies of all firing rules add up; the first firing drop/status/lost-answer rule wins."""
        outcome = FaultOutcome()
        with self._lock:
            for rule in self.rules:
                if not rule.matches(request) or not rule.fires():
                    continue
                outcome.latency += rule.latency
                if rule.lose_answer or rule.late:
                    outcome.lose_answer, outcome.late = rule.lose_answer, rule.late
                    break
                if rule.drop:
                    outcome.drop = True
                    break
                if rule.status is not None:
                    outcome.response = rule.response(request)
                    break
        return outcome


# --------------------------------------------------------------------------- HTTP over a socket


class ConnectionDropped(Exception):
    """Raised to close the connection without an answer (fault injection)."""


class _BadRequest(Exception):
    pass


@dataclass
class RawRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes


def _read_line(rfile: BinaryIO) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _BadRequest("line too long")
    return line


def read_request(rfile: BinaryIO) -> RawRequest | None:
    """Parse one HTTP/1.1 request; None on a clean EOF between requests."""
    line = _read_line(rfile)
    while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between keep-alive requests
        line = _read_line(rfile)
    if not line:
        return None
    parts = line.decode("latin-1").strip().split()
    if len(parts) != 3:
        raise _BadRequest(f"bad request line {line!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        hline = _read_line(rfile)
        if hline in (b"\r\n", b"\n", b""):
            break
        name, sep, value = hline.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest(f"bad header {hline!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    else:
        raise _BadRequest("too many headers")
    return RawRequest(method.upper(), target, version, headers, b"")


def read_body(rfile: BinaryIO, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int(_read_line(rfile).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while _read_line(rfile) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(rfile.read(size))
            _read_line(rfile)
    length = int(headers.get("content-length", "0") or 0)
    body = rfile.read(length) if length else b""
    if len(body) != length:
        raise _BadRequest("truncated body")
    return body


def write_response(sock: socket.socket, response: Response, head_only: bool = False, close: bool = False) -> None:
    payload, headers = response.encoded()
    if response.status in (204, 304) or 100 <= response.status < 200:
        payload = b""
        headers["Content-Length"] = "0"
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    headers.setdefault("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
    headers.setdefault("Server", "azure-emulator")
    if close:
        headers["Connection"] = "close"
    head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode("latin-1") + (b"" if head_only else payload))


def _host_without_port(authority: str) -> str:
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority.split("]")[0] + "]"
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) so the client sees a reset, not a clean EOF."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with suppress(OSError):
        sock.close()


# --------------------------------------------------------------------------- the emulator


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], emulator: AzureEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.emulator._serve_connection(self.request)  # type: ignore[attr-defined]


class AzureEmulator:
    """Threaded HTTPS-MITM proxy + plain HTTP server that dispatches to service ``Route``s.

    ``AzureEmulator(port=0, load_services=True, state=None)``; ``start()``/``stop()`` or use it
    as a context manager. After ``start()``: ``port``, ``url``, ``proxy_url``, ``ca_bundle_path``,
    ``env()``. Tests inspect ``log`` (``calls()``, ``requests()``), ``unmatched``, ``errors`` and
    steer ``faults``.
    """

    def __init__(self, port: int = 0, load_services: bool = True, state: EmulatorState | None = None,
                 host: str = "127.0.0.1") -> None:
        self.bind_host = host
        self.requested_port = port
        self.state = state or EmulatorState()
        self.routes: list[Route] = []
        self.middleware: list[Middleware] = []
        self.log = RequestLog()
        self.faults = Faults()
        self.unmatched: list[Request] = []  # requests no route matched (answered 404)
        self.errors: list[str] = []  # tracebacks of handler exceptions (answered 500)
        self.loaded_services: list[str] = []
        self._tmpdir = tempfile.mkdtemp(prefix="azure-emulator-")
        self.ca = CertificateAuthority(self._tmpdir)
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        if load_services:
            self.load_services()

    # -- configuration -----------------------------------------------------------------

    def register(self, routes: list[Route]) -> None:
        """Append routes (first match wins, so earlier registrations take precedence)."""
        self.routes.extend(routes)

    def load_services(self, names: tuple[str, ...] = DEFAULT_SERVICE_MODULES) -> None:
        """Import sibling modules exposing ``ROUTES`` (and ``MIDDLEWARE``); modules not written yet are skipped."""
        package = __package__ or "tests.azure_emulator"
        for name in names:
            try:
                module = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name in (f"{package}.{name}", name):
                    continue
                raise
            routes = getattr(module, "ROUTES", None)
            if routes:
                self.register(list(routes))
                self.middleware.extend(getattr(module, "MIDDLEWARE", ()))
                self.loaded_services.append(name)

    @property
    def ca_bundle_path(self) -> str:
        return self.ca.bundle_path

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    proxy_url = url

    def env(self) -> dict[str, str]:
        """Environment for a client process (or ``os.environ``) to use the emulator.

        Azure host names go through the proxy (CONNECT → MITM TLS with our CA); only loopback
        bypasses it, so a client may still talk to ``http://127.0.0.1:PORT`` directly.
        """
        ca = self.ca_bundle_path
        return {
            "HTTPS_PROXY": self.proxy_url,
            "https_proxy": self.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": ca,
            "SSL_CERT_FILE": ca,
            "CURL_CA_BUNDLE": ca,
        }

    @contextmanager
    def environ(self) -> Iterator[dict[str, str]]:
        """Temporarily apply ``env()`` to ``os.environ`` (for in-process SDK clients).

        Also clears HTTP(S)_PROXY-like variables the emulator does not set (e.g. ``ALL_PROXY``)
        so nothing leaks to a real proxy.
        """
        overrides = self.env()
        cleared = ["ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"]
        saved = {k: os.environ.get(k) for k in [*overrides, *cleared]}
        try:
            for k in cleared:
                os.environ.pop(k, None)
            os.environ.update(overrides)
            yield overrides
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- test helpers ------------------------------------------------------------------

    def calls(self, method: str | None = None, host: str | None = None, path_contains: str | None = None) -> list[Call]:
        return self.log.calls(method, host, path_contains)

    def reset_log(self) -> None:
        self.log.reset()
        self.unmatched.clear()
        self.errors.clear()

    def reset(self) -> None:
        """Fresh state, empty log, no faults (between tests sharing one running emulator)."""
        with self.state.lock:
            self.state.services.clear()
        self.reset_log()
        self.faults.clear()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> AzureEmulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _TCPServer((self.bind_host, self.requested_port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"azure-emulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def close(self) -> None:
        """Stop and delete the temporary CA directory."""
        self.stop()
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> AzureEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection handling -----------------------------------------------------------

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def _serve_connection(self, sock: socket.socket) -> None:
        sock.settimeout(IDLE_TIMEOUT_S)
        self._track(sock, True)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if not first:
                return
            if first == b"\x16":  # TLS ClientHello sent straight to the port
                tls = self.ca.direct_context().wrap_socket(sock, server_side=True)
                self._track(tls, True)
                try:
                    self._serve_http(tls, tunnel_host=None, scheme="https")
                finally:
                    self._track(tls, False)
            else:
                self._serve_http(sock, tunnel_host=None, scheme="http")
        except (OSError, ssl.SSLError, ConnectionDropped, _BadRequest, ValueError):
            pass  # client went away, TLS failure, injected drop, garbage: just close
        finally:
            self._track(sock, False)
            with suppress(OSError):
                sock.close()

    def _serve_http(self, sock: socket.socket, tunnel_host: str | None, scheme: str) -> None:
        """Request loop on one connection (plain, direct TLS, or inside a CONNECT tunnel)."""
        rfile = sock.makefile("rb")
        try:
            while not self._stopping.is_set():
                raw = read_request(rfile)
                if raw is None:
                    return
                if raw.method == "CONNECT" and tunnel_host is None:
                    self._open_tunnel(sock, rfile, raw)
                    return
                if raw.headers.get("expect", "").lower() == "100-continue":
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                raw.body = read_body(rfile, raw.headers)
                close = raw.headers.get("connection", "").lower() == "close" or raw.version == "HTTP/1.0"
                request = self._to_request(raw, tunnel_host)
                response = self._respond(request, sock)
                write_response(sock, response, head_only=raw.method == "HEAD", close=close)
                if close:
                    return
        finally:
            rfile.close()

    def _open_tunnel(self, sock: socket.socket, rfile: BinaryIO, raw: RawRequest) -> None:
        host = _host_without_port(raw.target)
        self.log.record_tunnel(raw.target)
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        tls = self.ca.context_for(host).wrap_socket(sock, server_side=True)
        self._track(tls, True)
        try:
            self._serve_http(tls, tunnel_host=host, scheme="https")
        finally:
            self._track(tls, False)
            with suppress(OSError):
                tls.close()

    @staticmethod
    def _to_request(raw: RawRequest, tunnel_host: str | None) -> Request:
        target = raw.target
        host = tunnel_host
        if target.startswith(("http://", "https://")):  # absolute form (plain proxy request)
            parts = urlsplit(target)
            host = host or parts.hostname
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        host = host or _host_without_port(raw.headers.get("host", "127.0.0.1"))
        path, _, query = target.partition("?")
        return Request(
            method=raw.method,
            host=host.lower(),
            path=unquote(path) or "/",
            query=Request.parse_query(query),
            headers=raw.headers,
            body=raw.body,
        )

    def _respond(self, request: Request, sock: socket.socket) -> Response:
        """Faults first, then the first matching route; log the outcome."""
        outcome = self.faults.evaluate(request)
        if outcome.latency:
            time.sleep(outcome.latency)
        if outcome.drop:
            self.log.record(request, 0)
            _abort(sock)
            raise ConnectionDropped()
        response = outcome.response or self.answer(request)
        for observe in response_observers:
            observe(request, response)
        if outcome.lose_answer:  # the service acted; its answer is lost on the way back
            self.log.record(request, response.status, lost=True)
            _abort(sock)
            raise ConnectionDropped()
        if outcome.late:  # the service acted; its answer arrives after the client stopped waiting
            self.log.record(request, response.status, lost=True)
            time.sleep(outcome.late)
            return response
        self.log.record(request, response.status)
        return response

    def answer(self, request: Request, step: int = 0) -> Response:
        """*request* through the services' ``middleware`` (from ``step`` on), then the routes."""
        if step == len(self.middleware):
            return self.dispatch(request)
        return self.middleware[step](request, self.state, lambda inner: self.answer(inner, step + 1))

    def dispatch(self, request: Request) -> Response:
        """Route *request*, without the middleware (also usable without sockets, e.g. from unit tests)."""
        for route in self.routes:
            params = route.match(request)
            if params is None:
                continue
            request.params = params
            try:
                return route.handler(request, self.state)
            except Exception:  # a bug in a handler: answer 500 and keep the trace for the test
                self.errors.append(traceback.format_exc())
                return error(500, "EmulatorHandlerError", "handler raised; see AzureEmulator.errors")
        self.unmatched.append(request)
        message = f"no emulated route for {request.method} {request.host}{request.path}"
        return error(404, "EmulatorRouteNotFound", message)


# --------------------------------------------------------------------------- standalone


def _raise_keyboard_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Azure emulator (HTTPS MITM proxy) in the foreground.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = ephemeral)")
    args = parser.parse_args(argv)
    emulator = AzureEmulator(port=args.port).start()
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # clean up the CA directory on kill
    print(f"# azure emulator listening on {emulator.url}; services: {', '.join(emulator.loaded_services) or 'none'}")
    for key, value in emulator.env().items():
        print(f"export {key}={value}")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
