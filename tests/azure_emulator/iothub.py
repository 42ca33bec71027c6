"""Emulated IoT Hub service data plane (api-version 2021-04-12, as azure-iot-hub 2.7.0 calls it).

Covers configurations (= IoT Edge automatic/layered deployments and ADM configurations),
device identities, device twins, the twin query API, ``applyConfigurationContent`` and the
``$edgeAgent`` module twin, with the rules the real hub enforces (immutable content, quoted
If-Match, limits, no ``IN``/double quotes in target conditions). State lives in
``state.service("iothub")["hubs"][<host>]`` so several hubs can coexist.

Test-side API (plain Python, no HTTP): ``seed_devices``, ``set_device_report``, ``get_hub``,
``advance_clock`` / ``set_clock`` (the hubs' time, which drives the metrics evaluation cycle) and
``set_metrics_evaluation``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .framework import EmulatorState, Request, Response, Route

HOST = r"[^/]+\.azure-devices\.net"
DEFAULT_HUB = "emuhub.azure-devices.net"

# Quotas of a paid (S1-S3) hub, counted separately: "IoT Edge automatic deployments: 100 (including layered
# deployments) per paid SKU hub" and "Automatic device and module configurations: 100 per paid SKU hub"
# (MicrosoftDocs/azure-docs, articles/iot-hub/iot-hub-devguide-quotas-throttling.md, "Other limits").
MAX_EDGE_DEPLOYMENTS = 100
MAX_ADM_CONFIGURATIONS = 100
MAX_CONFIGURATIONS = MAX_EDGE_DEPLOYMENTS  # the older name: the edge deployment quota
# GET /configurations?top=N: "The number of configurations to retrieve. Value will be overridden if greater than
# the maximum deployment count for the IoT hub." (service.json 2021-04-12, Configuration_GetConfigurations; the
# same text in azure-iot-hub 2.7's configuration_operations.py). No paging: a hub holding 100 deployments and
# 100 ADM configurations can never be listed whole.
MAX_LISTED_CONFIGURATIONS = MAX_EDGE_DEPLOYMENTS
MAX_CUSTOM_METRICS = 5
MAX_MODULES_PER_DEPLOYMENT = 50
MAX_TWIN_VALUE_BYTES = 4 * 1024
MAX_TAGS_BYTES = 8 * 1024
MAX_DESIRED_BYTES = 32 * 1024
MAX_TWIN_DEPTH = 10
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The metrics evaluation cycle: "Automatic configurations run for the first time shortly after the configuration
# is created and then at five minute intervals. Metrics queries run each time the automatic configuration runs."
# (MicrosoftDocs/azure-docs, articles/iot-hub/iot-hub-automatic-device-management.md), and "When a new IoT Edge
# deployment is created, sometimes it can take up to 5 minutes for the IoT Hub to process the new configuration"
# (articles/iot-edge/how-to-deploy-at-scale.md, how-to-deploy-cli-at-scale.md). The emulator takes the worst case
# those allow: a configuration's system and custom metrics are evaluated every 5 minutes of the hub's clock counted
# from its creation, the first time 5 minutes after it; until then ``results`` are empty, and between two
# evaluations they are the last evaluation's, whatever changed since. ``set_metrics_evaluation(state, None)``
# computes them on every read instead (the emulator's behaviour before the cycle was modelled).
METRICS_EVALUATION_SECONDS = 300.0

CONFIG_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9\-:.+%_#*?!(),=@;']{1,128}$")
TWIN_KEY_FORBIDDEN = re.compile(r"[.$ \x00-\x1f\x7f]")

#: Report outcomes a test can assign to a device's edgeAgent (see ``set_device_report``).
REPORT_SUCCESS, REPORT_FAILED, REPORT_PENDING = "success", "failed", "pending"


# =============================================================================== errors / utils


def hub_error(status: int, code: str, message: str, **headers: str) -> Response:
    """The IoT Hub error envelope: ``{"Message": "ErrorCode:<code>;<text>", "ExceptionMessage": "Tracking
    ID:..."}`` plus the ``iothub-errorcode`` header, and no ARM ``error`` object (as answered by the hub in
    azure-iot-sdk-csharp#2419; the C# service SDK's ``ExceptionHandlingHelper`` reads the code from that
    header). ``code`` should be one of IoT Hub's documented codes (troubleshoot-error-codes,
    rest/api/iothub/common-error-codes)."""
    body = {"Message": f"ErrorCode:{code};{message}",
            "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{_now()}"}
    return Response(status, body, {"iothub-errorcode": code, **headers})


class HubError(Exception):
    """Raised inside handlers; converted to ``hub_error`` by the route wrapper."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return _iso(datetime.now(timezone.utc))


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class HubClock:
    """The emulated hubs' time: the wall clock moved by ``offset``, which tests set (``set_clock``) or push forward
    (``advance_clock``) so that evaluation cycles pass without waiting. Configuration timestamps
    (``createdTimeUtc``, ``lastUpdatedTimeUtc``) and the metrics evaluation cycle follow it."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def _unquote_etag(header: str) -> tuple[str, bool]:
    """``'"abc"'`` -> ``("abc", True)``; ``'abc'`` -> ``("abc", False)``."""
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1], True
    return value, False


def _check_if_match(header: str | None, current: str) -> None:
    """Registry/twin rule: absent or ``*`` -> unconditional; otherwise must equal the etag.

    Quotes are optional here (the registry manager always quotes).
    """
    if header is None:
        return
    value, _ = _unquote_etag(header)
    if value != "*" and value != current:
        raise HubError(412, "PreconditionFailed", f"Precondition failed: etag {header} does not match {current!r}")


def _check_twin_if_match(header: str | None, current: str) -> None:
    """Twins: an ``If-Match`` that is not an entity tag (no quotes, RFC 7232 section 2.3) is ignored, as the
    hub does (issue 11, item 6); ``*`` or a quoted etag that differs gives 412."""
    if header is None:
        return
    value, quoted = _unquote_etag(header)
    if quoted and value != "*" and value != current:
        raise HubError(412, "PreconditionFailed", f"Precondition failed: etag {header} does not match {current!r}")


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386) as twins use it: ``null`` removes a key."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            base = result.get(key)
            result[key] = merge_patch(base if isinstance(base, dict) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    return value


# =============================================================================== query language

MISSING = object()  # an undefined property (distinct from JSON null)
Pred = Callable[[dict[str, Any]], bool | None]  # three-valued: True / False / None (undefined)
Operand = Callable[[dict[str, Any]], Any]


class QueryError(ValueError):
    pass


_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<dstring>"(?:[^"\\]|\\.)*")
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<op><=|>=|<>|!=|=|<|>)
    | (?P<path>(?:[A-Za-z_$@][A-Za-z0-9_$@]*|\[\[[^\]]+\]\])(?:\.(?:[A-Za-z_$@][A-Za-z0-9_$@]*|\[\[[^\]]+\]\]))*)
    | (?P<punct>[(),\[\]*])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "NIN", "TRUE", "FALSE", "NULL", "IS_DEFINED", "SELECT", "FROM", "WHERE",
             "AS", "COUNT", "GROUP", "BY", "TOP"}


@dataclass(frozen=True)
class Token:
    kind: str  # string | dstring | number | op | path | punct | kw | end
    value: Any
    text: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"Syntax error at position {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        pos = m.end()
        if kind == "string":
            tokens.append(Token(kind, raw[1:-1].replace("''", "'"), raw))
        elif kind == "dstring":
            tokens.append(Token(kind, json.loads(raw), raw))
        elif kind == "number":
            tokens.append(Token(kind, float(raw) if re.search(r"[.eE]", raw) else int(raw), raw))
        elif kind == "path" and "." not in raw and raw.upper() in _KEYWORDS:
            tokens.append(Token("kw", raw.upper(), raw))
        elif kind == "path":
            parts = tuple(p[2:-2] if p.startswith("[[") else p for p in re.findall(r"\[\[[^\]]+\]\]|[^.]+", raw))
            tokens.append(Token(kind, parts, raw))
        else:
            tokens.append(Token(kind, raw, raw))
    tokens.append(Token("end", None, ""))
    return tokens


def lookup(doc: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        if not isinstance(doc, dict) or part not in doc:
            return MISSING
        doc = doc[part]
    return doc


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def compare(op: str, a: Any, b: Any) -> bool | None:
    """Comparison with query semantics: undefined or mismatched types -> undefined (None)."""
    if a is MISSING or b is MISSING:
        return None
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka == "object":
        return None
    if op == "=":
        return bool(a == b)
    if op in ("!=", "<>"):
        return bool(a != b)
    if ka in ("null", "bool"):
        return None
    return bool({"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op])


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


@dataclass
class Projection:
    kind: str  # "star" | "count" | "path"
    name: str = ""
    path: tuple[str, ...] = ()


@dataclass
class Statement:
    projections: list[Projection]
    source: str  # "devices" | "devices.modules"
    where: Pred | None
    group_by: list[tuple[str, ...]]
    top: int | None = None


class _Parser:
    """Recursive-descent parser for the IoT Hub query subset; compiles to closures."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.paths: list[tuple[str, ...]] = []  # every property path referenced

    # -- token helpers
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def accept(self, kind: str, value: Any = None) -> Token | None:
        tok = self.peek()
        if tok.kind == kind and (value is None or tok.value == value):
            return self.take()
        return None

    def expect(self, kind: str, value: Any = None) -> Token:
        tok = self.accept(kind, value)
        if tok is None:
            got = self.peek().text or "end of input"
            raise QueryError(f"Syntax error: expected {value or kind}, got {got!r}")
        return tok

    def done(self) -> None:
        if self.peek().kind != "end":
            raise QueryError(f"Syntax error: unexpected {self.peek().text!r}")

    # -- conditions
    def condition(self) -> Pred:
        return self.or_expr()

    def or_expr(self) -> Pred:
        left = self.and_expr()
        while self.accept("kw", "OR"):
            right = self.and_expr()
            left = (lambda lhs, rhs: lambda d: _or(lhs(d), rhs(d)))(left, right)
        return left

    def and_expr(self) -> Pred:
        left = self.not_expr()
        while self.accept("kw", "AND"):
            right = self.not_expr()
            left = (lambda lhs, rhs: lambda d: _and(lhs(d), rhs(d)))(left, right)
        return left

    def not_expr(self) -> Pred:
        if self.accept("kw", "NOT"):
            inner = self.not_expr()
            return lambda d: None if (v := inner(d)) is None else not v
        return self.primary()

    def primary(self) -> Pred:
        if self.accept("punct", "("):
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        if self.accept("kw", "IS_DEFINED"):
            self.expect("punct", "(")
            parts = self.path()
            self.expect("punct", ")")
            return lambda d: lookup(d, parts) is not MISSING
        left = self.operand()
        if self.accept("kw", "IN"):
            values = self.literal_list()
            return lambda d: None if (v := left(d)) is MISSING else any(compare("=", v, x) for x in values)
        if self.accept("kw", "NIN"):
            values = self.literal_list()
            return lambda d: None if (v := left(d)) is MISSING else not any(compare("=", v, x) for x in values)
        op = self.accept("op")
        if op is None:  # a bare boolean operand, e.g. "WHERE capabilities.iotEdge"
            return lambda d: v if isinstance(v := left(d), bool) else None
        right = self.operand()
        return lambda d: compare(op.value, left(d), right(d))

    def path(self) -> tuple[str, ...]:
        parts: tuple[str, ...] = self.expect("path").value
        self.paths.append(parts)
        return parts

    def literal(self) -> Any:
        tok = self.take()
        if tok.kind in ("string", "dstring", "number"):
            return tok.value
        if tok.kind == "kw" and tok.value in ("TRUE", "FALSE", "NULL"):
            return {"TRUE": True, "FALSE": False, "NULL": None}[tok.value]
        raise QueryError(f"Syntax error: expected a value, got {tok.text or 'end of input'!r}")

    def literal_list(self) -> list[Any]:
        self.expect("punct", "[")
        values = [self.literal()]
        while self.accept("punct", ","):
            values.append(self.literal())
        self.expect("punct", "]")
        return values

    def operand(self) -> Operand:
        if self.peek().kind == "path":
            parts = self.path()
            return lambda d: lookup(d, parts)
        value = self.literal()
        return lambda d: value

    # -- statements
    def statement(self) -> Statement:
        self.expect("kw", "SELECT")
        top = None
        if self.accept("kw", "TOP"):
            top = int(self.expect("number").value)
        projections = [self.projection()]
        while self.accept("punct", ","):
            projections.append(self.projection())
        self.expect("kw", "FROM")
        source = ".".join(self.expect("path").value).lower()
        if source not in ("devices", "devices.modules"):
            raise QueryError(f"Unsupported query source {source!r}")
        where = None
        if self.accept("kw", "WHERE"):
            where = self.condition()
        group_by: list[tuple[str, ...]] = []
        if self.accept("kw", "GROUP"):
            self.expect("kw", "BY")
            group_by.append(self.path())
            while self.accept("punct", ","):
                group_by.append(self.path())
        self.done()
        if any(p.kind == "star" for p in projections) and (len(projections) > 1 or group_by):
            raise QueryError("SELECT * cannot be combined with other projections or GROUP BY")
        return Statement(projections, source, where, group_by, top)

    def projection(self) -> Projection:
        if self.accept("punct", "*"):
            return Projection("star")
        if self.accept("kw", "COUNT"):
            self.expect("punct", "(")
            self.expect("punct", ")")
            name = self.expect("path").text if self.accept("kw", "AS") else "$1"
            return Projection("count", name)
        parts = self.path()
        name = self.expect("path").text if self.accept("kw", "AS") else parts[-1]
        return Projection("path", name, parts)


def parse_query(text: str) -> Statement:
    if not isinstance(text, str) or not text.strip():
        raise QueryError("The query is empty")
    return _Parser(text).statement()


def compile_target_condition(text: str) -> Pred:
    """Validate a configuration target condition with the hub's rules and compile it.

    ``*`` targets every device; an empty condition targets none. Raises ``QueryError``.
    """
    text = (text or "").strip()
    if text == "*":
        return lambda d: True
    if not text:
        return lambda d: False
    if '"' in text:
        raise QueryError("Double quotes are not allowed in a target condition; use single quotes")
    parser = _Parser(text)
    if any(t.kind == "kw" and t.value in ("IN", "NIN") for t in parser.tokens):
        raise QueryError("Target condition must not use IN/NIN; expand to OR clauses")
    if any(t.kind == "kw" and t.value in ("SELECT", "FROM", "GROUP") for t in parser.tokens):
        raise QueryError("A target condition is a filter, not a query")
    pred = parser.condition()
    parser.done()
    for parts in parser.paths:
        if not (parts == ("deviceId",) or (parts[0] == "tags" and len(parts) > 1)
                or (parts[:2] == ("properties", "reported") and len(parts) > 2)):
            raise QueryError(f"Invalid property {'.'.join(parts)!r}: it must be a filter condition based on "
                             "'deviceId', 'tags', or 'properties.reported'")
    return pred


# =============================================================================== hub model


@dataclass
class Device:
    device_id: str
    identity: dict[str, Any]  # status, statusReason, authentication, capabilities, deviceScope, parentScopes
    tags: dict[str, Any] = field(default_factory=dict)
    desired: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    etag_n: int = 1
    twin_version: int = 1
    desired_version: int = 1
    reported_version: int = 1
    generation_id: str = field(default_factory=lambda: str(secrets.randbelow(10**18)))
    modules_content: dict[str, Any] | None = None  # from applyConfigurationContent
    report: str = REPORT_SUCCESS  # what the emulated edgeAgent reports for applied deployments
    updated: str = field(default_factory=_now)

    @property
    def etag(self) -> str:
        return _b64(str(self.etag_n))

    @property
    def twin_etag(self) -> str:
        return _b64(self.twin_version.to_bytes(8, "big"))

    @property
    def is_edge(self) -> bool:
        return bool((self.identity.get("capabilities") or {}).get("iotEdge"))

    def touch_twin(self) -> None:
        self.twin_version += 1
        self.updated = _now()


@dataclass
class Assignment:
    """Which configurations reach which device, computed from target conditions + priorities."""

    per_device: dict[str, dict[str, str]]  # device id -> {config id: "Targeted"|"Applied"}
    counts: dict[str, dict[str, int]]  # config id -> system metric results
    applied_edge: dict[str, list[dict[str, Any]]]  # device id -> applied edge configs, ascending priority


@dataclass
class Hub:
    name: str
    devices: dict[str, Device] = field(default_factory=dict)
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    generation: int = 0  # bumped on every mutation; keys the caches below
    config_seq: int = 0
    # Configuration reads mask registryCredentials passwords (``mask_registry_passwords``): nothing published
    # promises that the hub returns them readable.
    masks_passwords: bool = False
    clock: HubClock = field(default_factory=HubClock)
    # Seconds between two evaluations of a configuration's metrics (``METRICS_EVALUATION_SECONDS``); None: computed
    # on every read.
    evaluation_seconds: float | None = METRICS_EVALUATION_SECONDS
    _assignment: tuple[int, Assignment] | None = None
    _docs: tuple[int, list[dict[str, Any]]] | None = None
    _module_docs: tuple[int, list[dict[str, Any]]] | None = None
    _queries: dict[tuple[int, str], list[tuple[str, Any]]] = field(default_factory=dict)

    def changed(self) -> None:
        self.generation += 1
        self._queries.clear()

    def now(self) -> str:
        return _iso(self.clock.now())

    # ---- the metrics evaluation cycle
    def evaluate_due(self) -> None:
        """Run the evaluations that are due by the hub's clock, on the hub as it is now. Called before every
        request is handled and before every test-side change, so an evaluation always sees the hub as it was at
        its due time: nothing changed between that time and now."""
        if self.evaluation_seconds is None:
            return
        now = self.clock.now()
        for cfg in self.configurations.values():
            self._evaluate_if_due(cfg, now, self.evaluation_seconds)

    def _evaluate_if_due(self, cfg: dict[str, Any], now: datetime, interval: float) -> None:
        created = _parse_time(cfg.get("createdTimeUtc") or "")
        if created is None:
            return
        cycle = int((now - created).total_seconds() // interval)  # evaluations due so far
        if cycle >= 1 and (cfg.get("_evaluation") or (0, {}))[0] != cycle:
            cfg["_evaluation"] = (cycle, evaluate_metrics(self, cfg))

    def metric_results(self, cfg: dict[str, Any]) -> dict[str, dict[str, int]]:
        """``{"system": ..., "custom": ...}`` as the last evaluation left them (empty before the first one), or
        computed now when the cycle is off."""
        if self.evaluation_seconds is None:
            return evaluate_metrics(self, cfg)
        self._evaluate_if_due(cfg, self.clock.now(), self.evaluation_seconds)
        evaluation = cfg.get("_evaluation")
        return evaluation[1] if evaluation else {"system": {}, "custom": {}}

    # ---- configurations → devices
    def assignment(self) -> Assignment:
        if self._assignment and self._assignment[0] == self.generation:
            return self._assignment[1]
        result = _compute_assignment(self)
        self._assignment = (self.generation, result)
        return result

    # ---- documents the query language runs on
    def twin_docs(self) -> list[dict[str, Any]]:
        if not (self._docs and self._docs[0] == self.generation):
            assignment = self.assignment()
            self._docs = (self.generation, [render_twin(d, assignment) for d in self.devices.values()])
        return self._docs[1]

    def module_docs(self) -> list[dict[str, Any]]:
        if not (self._module_docs and self._module_docs[0] == self.generation):
            assignment = self.assignment()
            docs = [render_edge_agent_twin(self, d, assignment) for d in self.devices.values() if d.is_edge]
            self._module_docs = (self.generation, docs)
        return self._module_docs[1]

    def run_query(self, text: str) -> list[tuple[str, Any]]:
        """Evaluate a query; results as ``(sort key, item)`` sorted by key (cached per generation)."""
        key = (self.generation, text)
        if key not in self._queries:
            if len(self._queries) > 16:
                self._queries.clear()
            self._queries[key] = _execute(parse_query(text), self)
        return self._queries[key]


def config_kind(cfg: dict[str, Any]) -> str:
    content = cfg.get("content") or {}
    if content.get("modulesContent") is not None:
        return "edge"
    if content.get("moduleContent") is not None:
        return "module"
    return "device"


def is_layered(cfg: dict[str, Any]) -> bool:
    """Layered = ``$edgeAgent`` has no full ``properties.desired`` or some module uses dotted keys."""
    modules = (cfg.get("content") or {}).get("modulesContent") or {}
    if "properties.desired" not in (modules.get("$edgeAgent") or {}):
        return True
    return any(k.startswith("properties.desired.") for m in modules.values() if isinstance(m, dict) for k in m)


def _precedence(cfg: dict[str, Any]) -> tuple[int, str, int]:
    """Higher wins: priority, then newest createdTimeUtc, then creation order."""
    return (cfg.get("priority") or 0, cfg["createdTimeUtc"], cfg["_seq"])


def _compute_assignment(hub: Hub) -> Assignment:
    """Apply the hub's rules to every device.

    Edge deployments (``modulesContent``): one base deployment per device (highest precedence
    among matching ones), plus every matching layered deployment whose priority is higher than
    the base's. ADM device configurations: the highest-precedence matching one. Module (ADM)
    configurations are not evaluated.
    """
    configs = sorted(hub.configurations.values(), key=_precedence, reverse=True)
    preds = {}
    for cfg in configs:
        try:
            preds[cfg["id"]] = compile_target_condition(cfg.get("targetCondition") or "")
        except QueryError:
            preds[cfg["id"]] = lambda d: False
    counts = {c["id"]: dict.fromkeys(("targetedCount", "appliedCount", "reportedSuccessfulCount",
                                      "reportedFailedCount"), 0) for c in configs}
    per_device: dict[str, dict[str, str]] = {}
    applied_edge: dict[str, list[dict[str, Any]]] = {}
    for device in hub.devices.values():
        doc = _base_doc(device)
        statuses: dict[str, str] = {}
        base_edge = base_device = None
        layered: list[dict[str, Any]] = []
        for cfg in configs:
            kind = config_kind(cfg)
            if kind == "module" or (kind == "edge" and not device.is_edge) or preds[cfg["id"]](doc) is not True:
                continue
            statuses[cfg["id"]] = "Targeted"
            counts[cfg["id"]]["targetedCount"] += 1
            if kind == "device" and base_device is None:
                base_device = cfg
            elif kind == "edge" and is_layered(cfg):
                layered.append(cfg)
            elif kind == "edge" and base_edge is None:
                base_edge = cfg
        floor = (base_edge.get("priority") or 0) if base_edge else -1
        winners = [c for c in (base_edge, base_device) if c] + [c for c in layered if (c.get("priority") or 0) > floor]
        for cfg in winners:
            statuses[cfg["id"]] = "Applied"
            metric = counts[cfg["id"]]
            metric["appliedCount"] += 1
            if device.report == REPORT_SUCCESS:
                metric["reportedSuccessfulCount"] += 1
            elif device.report == REPORT_FAILED:
                metric["reportedFailedCount"] += 1
        if statuses:
            per_device[device.device_id] = statuses
        edge = [c for c in winners if config_kind(c) == "edge"]
        if edge:
            applied_edge[device.device_id] = sorted(edge, key=_precedence)
    return Assignment(per_device, counts, applied_edge)


def _base_doc(device: Device) -> dict[str, Any]:
    """What target conditions see (no ``configurations``; avoids a circular dependency)."""
    return {"deviceId": device.device_id, "tags": device.tags, "properties": {"reported": device.reported},
            "capabilities": device.identity.get("capabilities") or {}, "status": device.identity.get("status")}


# =============================================================================== rendering


def render_device(device: Device) -> dict[str, Any]:
    ident = device.identity
    return {
        "deviceId": device.device_id,
        "generationId": device.generation_id,
        "etag": device.etag,
        "connectionState": "Disconnected",
        "status": ident.get("status", "enabled"),
        "statusReason": ident.get("statusReason"),
        "connectionStateUpdatedTime": "0001-01-01T00:00:00Z",
        "statusUpdatedTime": "0001-01-01T00:00:00Z",
        "lastActivityTime": "0001-01-01T00:00:00Z",
        "cloudToDeviceMessageCount": 0,
        "authentication": copy.deepcopy(ident.get("authentication")),
        "capabilities": {"iotEdge": device.is_edge},
        "deviceScope": ident.get("deviceScope"),
        "parentScopes": list(ident.get("parentScopes") or []),
    }


def render_twin(device: Device, assignment: Assignment | None = None) -> dict[str, Any]:
    ident = device.identity
    twin: dict[str, Any] = {
        "deviceId": device.device_id,
        "etag": device.twin_etag,
        "deviceEtag": device.etag,
        "status": ident.get("status", "enabled"),
        "statusUpdateTime": "0001-01-01T00:00:00Z",
        "connectionState": "Disconnected",
        "lastActivityTime": "0001-01-01T00:00:00Z",
        "cloudToDeviceMessageCount": 0,
        "authenticationType": (ident.get("authentication") or {}).get("type", "sas"),
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "modelId": "",
        "version": device.twin_version,
    }
    if device.tags:
        twin["tags"] = copy.deepcopy(device.tags)
    twin["properties"] = {
        "desired": {**copy.deepcopy(device.desired), "$metadata": {"$lastUpdated": device.updated},
                    "$version": device.desired_version},
        "reported": {**copy.deepcopy(device.reported), "$metadata": {"$lastUpdated": device.updated},
                     "$version": device.reported_version},
    }
    twin["capabilities"] = {"iotEdge": device.is_edge}
    if ident.get("deviceScope"):
        twin["deviceScope"] = ident["deviceScope"]
    twin["parentScopes"] = list(ident.get("parentScopes") or [])
    statuses = (assignment.per_device.get(device.device_id) if assignment else None) or {}
    if statuses:
        twin["configurations"] = {cid: {"status": status} for cid, status in statuses.items()}
    return twin


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[last] = copy.deepcopy(value)


def effective_module_desired(hub: Hub, device: Device, module: str,
                             assignment: Assignment | None = None) -> dict[str, Any] | None:
    """Desired properties the hub writes to a module twin: base deployment + layered patches.

    Falls back to content pushed with ``applyConfigurationContent`` when no deployment applies.
    """
    assignment = assignment or hub.assignment()
    applied = assignment.applied_edge.get(device.device_id)
    if not applied:
        content = (device.modules_content or {}).get(module)
        return copy.deepcopy(content.get("properties.desired")) if isinstance(content, dict) else None
    desired: dict[str, Any] | None = None
    for cfg in applied:  # ascending precedence: later (higher priority) layers win
        section = (cfg["content"]["modulesContent"] or {}).get(module) or {}
        for key, value in section.items():
            if key == "properties.desired":
                desired = copy.deepcopy(value)
            elif key.startswith("properties.desired."):
                desired = desired if desired is not None else {}
                _set_dotted(desired, key[len("properties.desired."):], value)
    return desired


def render_edge_agent_twin(hub: Hub, device: Device, assignment: Assignment | None = None) -> dict[str, Any]:
    """The ``$edgeAgent`` module twin, with reported status synthesized from ``device.report``."""
    assignment = assignment or hub.assignment()
    desired = effective_module_desired(hub, device, "$edgeAgent", assignment) or {}
    desired_version = 1 + len(assignment.applied_edge.get(device.device_id, []))
    reported: dict[str, Any] = {}
    if desired and device.report != REPORT_PENDING:
        ok = device.report == REPORT_SUCCESS
        reported = {"lastDesiredVersion": desired_version,
                    "lastDesiredStatus": {"code": 200 if ok else 500,
                                          "description": "" if ok else "emulated deployment failure"}}
    statuses = assignment.per_device.get(device.device_id) or {}
    return {
        "deviceId": device.device_id,
        "moduleId": "$edgeAgent",
        "etag": _b64(desired_version.to_bytes(8, "big")),
        "version": desired_version,
        "status": "enabled",
        "connectionState": "Disconnected",
        "properties": {"desired": {**desired, "$version": desired_version},
                       "reported": {**reported, "$version": 1}},
        "configurations": {cid: {"status": s} for cid, s in statuses.items()} if statuses else {},
    }


CREDENTIALS_PATH = "properties.desired.runtime.settings.registryCredentials"


def mask_registry_passwords(content: Any) -> Any:
    """A copy of a configuration's content with every ``registryCredentials.<name>.password`` of ``$edgeAgent``
    set to null (base form, and layered ``properties.desired.runtime.settings.registryCredentials[.<name>]``
    keys), as a hub that does not hand secrets back would answer."""
    content = copy.deepcopy(content)
    agent = ((content or {}).get("modulesContent") or {}).get("$edgeAgent")
    if not isinstance(agent, dict):
        return content

    def mask(entries: Any) -> None:
        for entry in (entries or {}).values() if isinstance(entries, dict) else ():
            if isinstance(entry, dict) and "password" in entry:
                entry["password"] = None

    for key, value in agent.items():
        if key == "properties.desired" and isinstance(value, dict):
            mask(((value.get("runtime") or {}).get("settings") or {}).get("registryCredentials"))
        elif key == CREDENTIALS_PATH:
            mask(value)
        elif key.startswith(CREDENTIALS_PATH + ".") and isinstance(value, dict) and "password" in value:
            value["password"] = None
    return content


def render_configuration(hub: Hub, cfg: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in cfg.items() if not k.startswith("_")}
    if hub.masks_passwords:
        out["content"] = mask_registry_passwords(out.get("content"))
    cid = cfg["id"]
    if config_kind(cfg) == "edge":
        applied = (f"select deviceId from devices.modules where moduleId = '$edgeAgent' "
                   f"and configurations.[[{cid}]].status = 'Applied'")
        reported = " and properties.desired.$version = properties.reported.lastDesiredVersion"
        status_code = "properties.reported.lastDesiredStatus.code"
        queries = {"targetedCount": f"select deviceId from devices where capabilities.iotEdge = true and "
                                    f"({cfg.get('targetCondition') or ''})",
                   "appliedCount": applied,
                   "reportedSuccessfulCount": f"{applied}{reported} and {status_code} = 200",
                   "reportedFailedCount": f"{applied}{reported} and {status_code} != 200"}
    else:
        queries = {"targetedCount": f"select deviceId from devices where {cfg.get('targetCondition') or ''}",
                   "appliedCount": f"select deviceId from devices where configurations.[[{cid}]].status = 'Applied'"}
    results = hub.metric_results(cfg)
    out["systemMetrics"] = {"results": dict(results["system"]), "queries": queries}
    metric_queries = dict(((cfg.get("metrics") or {}).get("queries")) or {})
    out["metrics"] = {"results": dict(results["custom"]), "queries": metric_queries}
    return out


def evaluate_metrics(hub: Hub, cfg: dict[str, Any]) -> dict[str, dict[str, int]]:
    """One evaluation of a configuration's metrics: the system metrics of its kind (edge deployments: targeted,
    applied, reported successful and failed; ADM configurations: targeted and applied) from the hub's assignment,
    and each custom metric as the number of rows its query returns."""
    names = (("targetedCount", "appliedCount", "reportedSuccessfulCount", "reportedFailedCount")
             if config_kind(cfg) == "edge" else ("targetedCount", "appliedCount"))
    counts = hub.assignment().counts.get(cfg["id"], {})
    custom = {}
    for name, query in (((cfg.get("metrics") or {}).get("queries")) or {}).items():
        try:
            custom[name] = len(hub.run_query(query))
        except QueryError:
            continue
    return {"system": {name: counts.get(name, 0) for name in names}, "custom": custom}


# =============================================================================== query execution


def _execute(stmt: Statement, hub: Hub) -> list[tuple[str, Any]]:
    docs = hub.twin_docs() if stmt.source == "devices" else hub.module_docs()
    rows = [d for d in docs if stmt.where is None or stmt.where(d) is True]
    rows.sort(key=lambda d: (d["deviceId"], d.get("moduleId", "")))
    kinds = {p.kind for p in stmt.projections}
    if "count" in kinds or stmt.group_by:
        items = _aggregate(stmt, rows)
        return [(f"{i:010d}", item) for i, item in enumerate(items)]
    keyed = [(f"{d['deviceId']}\x00{d.get('moduleId', '')}", d) for d in rows]
    if "star" not in kinds:
        keyed = [(k, _project(stmt.projections, d)) for k, d in keyed]
    return keyed[: stmt.top] if stmt.top is not None else keyed


def _project(projections: list[Projection], doc: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for p in projections:
        value = lookup(doc, p.path)
        if value is not MISSING:
            out[p.name] = value
    return out


def _aggregate(stmt: Statement, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``COUNT()`` with optional ``GROUP BY`` (grouped properties must be projected)."""
    if not stmt.group_by:
        if any(p.kind == "path" for p in stmt.projections):
            raise QueryError("Non-aggregated projections require GROUP BY")
        return [{p.name: len(rows) for p in stmt.projections if p.kind == "count"}]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = json.dumps([None if (v := lookup(row, g)) is MISSING else v for g in stmt.group_by], sort_keys=True)
        groups.setdefault(key, []).append(row)
    items = []
    for key in sorted(groups):
        members = groups[key]
        item = {}
        for p in stmt.projections:
            if p.kind == "count":
                item[p.name] = len(members)
            elif p.path not in stmt.group_by:
                raise QueryError(f"Property {'.'.join(p.path)} must appear in GROUP BY")
            elif (v := lookup(members[0], p.path)) is not MISSING:
                item[p.name] = v
        items.append(item)
    return items


def _continuation_token(query: str, last_key: str) -> str:
    payload = {"q": hashlib.sha1(query.encode()).hexdigest()[:12], "k": last_key}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode_continuation(query: str, token: str) -> str:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        if payload["q"] != hashlib.sha1(query.encode()).hexdigest()[:12]:
            raise ValueError("continuation token belongs to another query")
        return str(payload["k"])
    except (ValueError, KeyError, TypeError) as exc:
        raise HubError(400, "InvalidContinuationToken", f"Invalid continuation token: {exc}") from exc


# =============================================================================== validation


def _validate_twin_section(value: Any, limit: int, what: str, depth: int = 0) -> None:
    """Key charset, nesting depth and value size rules for tags / desired properties."""
    if depth == 0:
        if not isinstance(value, dict):
            raise HubError(400, "ArgumentInvalid", f"{what} must be a JSON object")
        if _json_size(value) > limit:
            raise HubError(400, "ArgumentInvalid", f"{what} exceed {limit} bytes")
    if isinstance(value, dict):
        if depth >= MAX_TWIN_DEPTH and value:
            raise HubError(400, "ArgumentInvalid", f"{what} are nested deeper than {MAX_TWIN_DEPTH} levels")
        for key, child in value.items():
            if depth == 0 and key.startswith("$"):
                continue  # $version / $metadata echoed back by clients are ignored
            if not key or TWIN_KEY_FORBIDDEN.search(key) or len(key.encode()) > 1024:
                raise HubError(400, "ArgumentInvalid", f"Invalid key {key!r} in {what}: no '.', '$', spaces or "
                                                       "control characters, at most 1 KB")
            _validate_twin_section(child, limit, what, depth + 1)
    elif isinstance(value, str) and len(value.encode()) > MAX_TWIN_VALUE_BYTES:
        raise HubError(400, "ArgumentInvalid", f"A value in {what} exceeds {MAX_TWIN_VALUE_BYTES} bytes")


def _validate_target_condition(text: Any) -> None:
    if text is not None and not isinstance(text, str):
        raise HubError(400, "InvalidConfigurationTargetCondition", "targetCondition must be a string")
    try:
        compile_target_condition(text or "")
    except QueryError as exc:
        raise HubError(400, "InvalidConfigurationTargetCondition", f"Invalid target condition {text!r}: {exc}") from exc


def _validate_mutable_fields(body: dict[str, Any]) -> None:
    _validate_target_condition(body.get("targetCondition"))
    priority = body.get("priority", 0)
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool) or priority < 0):
        raise HubError(400, "ArgumentInvalid", f"priority must be a non-negative integer, got {priority!r}")
    labels = body.get("labels") or {}
    if not isinstance(labels, dict):
        raise HubError(400, "ArgumentInvalid", "labels must be an object of strings")
    for key, value in labels.items():
        if not isinstance(value, str) or not LABEL_RE.match(key) or not LABEL_RE.match(value):
            raise HubError(400, "ArgumentInvalid", f"Invalid label {key!r}: {value!r}")
    queries = ((body.get("metrics") or {}).get("queries")) or {}
    if len(queries) > MAX_CUSTOM_METRICS:
        raise HubError(400, "ArgumentInvalid", f"At most {MAX_CUSTOM_METRICS} custom metrics are allowed")
    for name, query in queries.items():
        try:
            parse_query(query)
        except QueryError as exc:
            raise HubError(400, "InvalidConfigurationCustomMetricsQuery", f"Metric {name!r}: {exc}") from exc


def _count_modules(modules_content: dict[str, Any]) -> int:
    agent = modules_content.get("$edgeAgent") or {}
    names = set(((agent.get("properties.desired") or {}).get("modules") or {}).keys())
    names |= {k.split(".")[3] for k in agent if k.startswith("properties.desired.modules.") and k.count(".") >= 3}
    return len(names)


def _validate_content(content: Any) -> None:
    if not isinstance(content, dict) or not any(content.get(k) is not None for k in
                                                ("modulesContent", "deviceContent", "moduleContent")):
        raise HubError(400, "InvalidConfigurationContent",
                       "content must have one of modulesContent, deviceContent, moduleContent")
    modules = content.get("modulesContent")
    if modules is None:
        return
    if not isinstance(modules, dict) or "$edgeAgent" not in modules:
        raise HubError(400, "InvalidConfigurationContent", "modulesContent must include $edgeAgent")
    if not is_layered({"content": content}):
        for system in ("$edgeAgent", "$edgeHub"):
            if not isinstance((modules.get(system) or {}).get("properties.desired"), dict):
                raise HubError(400, "InvalidConfigurationContent",
                               f"A base deployment needs {system}.properties.desired")
    if _count_modules(modules) > MAX_MODULES_PER_DEPLOYMENT:
        raise HubError(400, "InvalidConfigurationContent",
                       f"A deployment may define at most {MAX_MODULES_PER_DEPLOYMENT} modules")
    for module, section in modules.items():
        if not isinstance(section, dict):
            raise HubError(400, "InvalidConfigurationContent", f"modulesContent.{module} must be an object")
        desired = {k: v for k, v in section.items()}
        _validate_twin_values(desired, f"modulesContent.{module}")
        if _json_size(desired) > MAX_DESIRED_BYTES:
            raise HubError(400, "InvalidConfigurationContent",
                           f"Desired properties of {module} exceed {MAX_DESIRED_BYTES} bytes")


def _validate_twin_values(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for child in value.values():
            _validate_twin_values(child, where)
    elif isinstance(value, list):
        for child in value:
            _validate_twin_values(child, where)
    elif isinstance(value, str) and len(value.encode()) > MAX_TWIN_VALUE_BYTES:
        raise HubError(400, "InvalidConfigurationContent",
                       f"A value in {where} exceeds {MAX_TWIN_VALUE_BYTES} bytes (split createOptions)")


# =============================================================================== state access


def _hub_name(name: str) -> str:
    name = name.lower()
    return name if "." in name else f"{name}.azure-devices.net"


def get_hub(state: EmulatorState, name: str = DEFAULT_HUB) -> Hub:
    """The hub for host *name* (``"emuhub"`` or ``"emuhub.azure-devices.net"``), created on demand."""
    host = _hub_name(name)
    with state.lock:
        hubs = state.service("iothub").setdefault("hubs", {})
        if host not in hubs:
            hubs[host] = Hub(host, clock=hub_clock(state))
        hub: Hub = hubs[host]
        return hub


def hub_clock(state: EmulatorState) -> HubClock:
    """The clock every emulated hub of ``state`` keeps time by."""
    with state.lock:
        clock: HubClock = state.service("iothub").setdefault("clock", HubClock())
        return clock


def advance_clock(state: EmulatorState, seconds: float) -> None:
    """Move the hubs' time forward (evaluation cycles that fall due run on the next request)."""
    with state.lock:
        hub_clock(state).offset += timedelta(seconds=seconds)


def set_clock(state: EmulatorState, moment: datetime) -> None:
    """Set the hubs' time to ``moment`` (from then on it runs with the wall clock). Tests that pin the product's
    time (``RECONCILER_NOW``) pin the hub's to the same moment, as they are one time in reality."""
    with state.lock:
        hub_clock(state).offset = moment - datetime.now(timezone.utc)


def set_metrics_evaluation(state: EmulatorState, seconds: float | None = METRICS_EVALUATION_SECONDS,
                           hub: str = DEFAULT_HUB) -> None:
    """Evaluate the hub's metrics every ``seconds`` (the default cycle), or, with None, on every read."""
    get_hub(state, hub).evaluation_seconds = seconds


def _new_keys() -> dict[str, Any]:
    keys = {"primaryKey": _b64(secrets.token_bytes(32)), "secondaryKey": _b64(secrets.token_bytes(32))}
    return {"symmetricKey": keys,
            "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None}, "type": "sas"}


def _make_identity(device_id: str, body: dict[str, Any], generation_id: str) -> dict[str, Any]:
    auth = copy.deepcopy(body.get("authentication")) or {}
    auth_type = auth.get("type") or "sas"
    if auth_type == "sas":
        sym = auth.get("symmetricKey") or {}
        if not sym.get("primaryKey") or not sym.get("secondaryKey"):
            auth = {**_new_keys(), **{k: v for k, v in auth.items() if k != "symmetricKey"},
                    "symmetricKey": {**_new_keys()["symmetricKey"], **{k: v for k, v in sym.items() if v}}}
        auth.setdefault("type", "sas")
    is_edge = bool((body.get("capabilities") or {}).get("iotEdge"))
    scope = body.get("deviceScope") or (f"ms-azure-iot-edge://{device_id}-{generation_id}" if is_edge else None)
    return {"status": body.get("status") or "enabled", "statusReason": body.get("statusReason"),
            "authentication": auth, "capabilities": {"iotEdge": is_edge}, "deviceScope": scope,
            "parentScopes": list(body.get("parentScopes") or [])}


def seed_devices(state: EmulatorState, devices: Iterable[tuple[str, dict[str, Any]]], hub: str = DEFAULT_HUB,
                 edge: bool = True, reported: dict[str, Any] | None = None) -> Hub:
    """Create (or re-tag) many devices at once, bypassing HTTP. 20,000 devices take well under a second.

    *devices* is an iterable of ``(device_id, tags)``; all are IoT Edge devices unless ``edge=False``.
    """
    target = get_hub(state, hub)
    with state.lock:
        target.evaluate_due()
        for device_id, tags in devices:
            existing = target.devices.get(device_id)
            if existing is not None:
                existing.tags = copy.deepcopy(tags or {})
                existing.touch_twin()
                continue
            device = Device(device_id, identity={}, tags=copy.deepcopy(tags or {}),
                            reported=copy.deepcopy(reported or {}))
            device.identity = _make_identity(device_id, {"capabilities": {"iotEdge": edge}}, device.generation_id)
            target.devices[device_id] = device
        target.changed()
    return target


def seed_adm_configurations(state: EmulatorState, count: int, hub: str = DEFAULT_HUB, prefix: str = "adm") -> None:
    """``count`` automatic device configurations (ADM, ``deviceContent``), created now, without HTTP: they take
    no IoT Edge deployment slot but do take places in a listing (``MAX_LISTED_CONFIGURATIONS``)."""
    target = get_hub(state, hub)
    with state.lock:
        target.evaluate_due()
        for i in range(count):
            cid, now = f"{prefix}-{i:03d}", target.now()
            target.config_seq += 1
            target.configurations[cid] = {
                "id": cid, "schemaVersion": "1.0", "labels": {}, "contentType": "assignment",
                "content": {"deviceContent": {"properties.desired.settings": {"interval": i}}},
                "targetCondition": "tags.nothing='here'", "createdTimeUtc": now, "lastUpdatedTimeUtc": now,
                "priority": 0, "metrics": {"queries": {}, "results": {}}, "etag": _b64("1"), "_version": 1,
                "_seq": target.config_seq}
        target.changed()


def set_password_masking(state: EmulatorState, masked: bool = True, hub: str = DEFAULT_HUB) -> None:
    """Configuration reads (``GET /configurations[/{id}]`` and the answers to ``PUT``) return registry
    passwords as null when ``masked``: the real hub's behaviour is not documented either way."""
    get_hub(state, hub).masks_passwords = masked


def set_device_report(state: EmulatorState, device_ids: Iterable[str], report: str = REPORT_FAILED,
                      hub: str = DEFAULT_HUB) -> None:
    """Decide what the emulated edgeAgent of these devices reports: success / failed / pending."""
    if report not in (REPORT_SUCCESS, REPORT_FAILED, REPORT_PENDING):
        raise ValueError(f"report must be success, failed or pending, not {report!r}")
    target = get_hub(state, hub)
    with state.lock:
        target.evaluate_due()
        for device_id in device_ids:
            target.devices[device_id].report = report
        target.changed()


def set_reported_properties(state: EmulatorState, device_id: str, patch: dict[str, Any],
                            hub: str = DEFAULT_HUB) -> None:
    """Merge-patch a device's reported properties (what the device itself would send)."""
    target = get_hub(state, hub)
    with state.lock:
        target.evaluate_due()
        device = target.devices[device_id]
        device.reported = merge_patch(device.reported, patch)
        device.reported_version += 1
        device.touch_twin()
        target.changed()


# =============================================================================== handlers

Handler = Callable[[Request, Hub], Response]


def _route(method: str, path: str, handler: Handler) -> Route:
    """Wrap a handler: authentication, api-version, hub lookup, locking, HubError → envelope."""

    def wrapped(request: Request, state: EmulatorState) -> Response:
        if not request.headers.get("authorization"):
            return hub_error(401, "IotHubUnauthorizedAccess", "Unauthorized: no Authorization header")
        if not request.q("api-version"):
            return hub_error(400, "InvalidProtocolVersion", "The api-version query parameter is required")
        with state.lock:
            try:
                hub = get_hub(state, request.host)
                hub.evaluate_due()
                return handler(request, hub)
            except HubError as exc:
                return hub_error(exc.status, exc.code, exc.message)

    return Route(method, HOST, path, wrapped)


def _body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise HubError(400, "ArgumentInvalid", f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise HubError(400, "ArgumentInvalid", "Request body must be a JSON object")
    return body


def _config(hub: Hub, cid: str) -> dict[str, Any]:
    cfg = hub.configurations.get(cid)
    if cfg is None:
        raise HubError(404, "ConfigurationNotFound", f"Configuration {cid!r} not found")
    return cfg


def _device(hub: Hub, device_id: str) -> Device:
    device = hub.devices.get(device_id)
    if device is None:
        raise HubError(404, "DeviceNotFound", f"Device {device_id!r} not found")
    return device


# ---- configurations


def put_configuration(request: Request, hub: Hub) -> Response:
    """Create, or update the mutable fields (targetCondition, priority, labels, metrics).

    Update needs ``If-Match`` with the *quoted* etag or ``"*"``. An unquoted value (what
    ``IoTHubConfigurationManager.update_configuration`` sends) is not a valid entity tag, so it
    is treated as absent: create semantics on an existing id -> 409, which reproduces
    Azure/azure-iot-hub-python#2 / azure-iot-sdk-python#983.
    """
    cid = request.params["id"]
    body = _body(request)
    if not CONFIG_ID_RE.match(cid):
        raise HubError(400, "ArgumentInvalid", f"Invalid configuration id {cid!r}: up to 128 lowercase letters, "
                                               "digits and '-'")
    if body.get("id") not in (None, cid):
        raise HubError(400, "ArgumentInvalid", f"Configuration id in body {body.get('id')!r} != {cid!r}")
    if_match = request.headers.get("if-match")
    etag, quoted = _unquote_etag(if_match) if if_match else ("", False)
    valid_if_match = bool(if_match) and (quoted or etag == "*")
    existing = hub.configurations.get(cid)
    if existing is None:
        if valid_if_match and etag != "*":
            raise HubError(404, "ConfigurationNotFound", f"Configuration {cid!r} not found")
        return _create_configuration(hub, cid, body)
    if not valid_if_match:
        raise HubError(409, "ConfigurationAlreadyExists",
                       f"Configuration {cid!r} already exists; to update it send If-Match with the quoted etag "
                       f"or \"*\" (got {if_match!r})")
    if etag != "*" and etag != existing["etag"]:
        raise HubError(412, "PreconditionFailed", f"Etag {if_match} does not match {existing['etag']!r}")
    sent, held = _strip_none(body.get("content")), _strip_none(existing["content"])
    if hub.masks_passwords:  # it must take back the content it hands out: masked passwords stand for unchanged
        sent, held = _strip_none(mask_registry_passwords(sent)), _strip_none(mask_registry_passwords(held))
    if sent != held:
        raise HubError(400, "CannotModifyImmutableConfigurationContent",
                       "Configuration content cannot be modified; only targetCondition, priority, labels and "
                       "metrics can be updated. Create a new configuration instead.")
    _validate_mutable_fields(body)
    existing.update(
        targetCondition=body.get("targetCondition") or "",
        priority=body.get("priority") or 0,
        labels=dict(body.get("labels") or {}),
        metrics={"queries": dict(((body.get("metrics") or {}).get("queries")) or {}), "results": {}},
        lastUpdatedTimeUtc=hub.now(),
    )
    existing["_version"] += 1
    existing["etag"] = _b64(str(existing["_version"]))
    hub.changed()
    return Response(200, render_configuration(hub, existing))


def _create_configuration(hub: Hub, cid: str, body: dict[str, Any]) -> Response:
    _validate_content(body.get("content"))
    _validate_mutable_fields(body)
    edge = config_kind(body) == "edge"
    limit = MAX_EDGE_DEPLOYMENTS if edge else MAX_ADM_CONFIGURATIONS
    if sum((config_kind(c) == "edge") == edge for c in hub.configurations.values()) >= limit:
        # 413 with code 413101 ConfigurationCountLimitExceeded: MicrosoftDocs/azure-docs,
        # articles/iot-hub/troubleshoot-error-codes.md, "413xxx Request entity too large errors". (403
        # IoTHubQuotaExceeded, 403002, is the daily message quota: common-error-codes.) Each kind has its quota.
        what = "IoT Edge deployments (incl. layered)" if edge else "automatic device and module configurations"
        raise HubError(413, "ConfigurationCountLimitExceeded", f"The hub already has {limit} {what}")
    now = hub.now()
    hub.config_seq += 1
    cfg = {
        "id": cid,
        "schemaVersion": body.get("schemaVersion") or "1.0",
        "labels": dict(body.get("labels") or {}),
        "content": _strip_none(copy.deepcopy(body["content"])),
        "contentType": "assignment",
        "targetCondition": body.get("targetCondition") or "",
        "createdTimeUtc": now,
        "lastUpdatedTimeUtc": now,
        "priority": body.get("priority") or 0,
        "metrics": {"queries": dict(((body.get("metrics") or {}).get("queries")) or {}), "results": {}},
        "etag": _b64("1"),
        "_version": 1,
        "_seq": hub.config_seq,
    }
    hub.configurations[cid] = cfg
    hub.changed()
    return Response(201, render_configuration(hub, cfg))


def get_configuration(request: Request, hub: Hub) -> Response:
    return Response(200, render_configuration(hub, _config(hub, request.params["id"])))


def list_configurations(request: Request, hub: Hub) -> Response:
    """Every kind together, in creation order (the real order is undocumented), at most
    ``MAX_LISTED_CONFIGURATIONS`` whatever ``top`` asks for (see that constant)."""
    top = request.q("top")
    try:
        limit = int(top) if top not in (None, "") else MAX_LISTED_CONFIGURATIONS
    except ValueError:
        raise HubError(400, "ArgumentInvalid", f"top must be an integer, got {top!r}") from None
    if limit < 0:
        raise HubError(400, "ArgumentInvalid", "top must not be negative")
    limit = min(limit, MAX_LISTED_CONFIGURATIONS)
    configs = sorted(hub.configurations.values(), key=lambda c: c["_seq"])[:limit]
    return Response(200, [render_configuration(hub, c) for c in configs])


def delete_configuration(request: Request, hub: Hub) -> Response:
    cfg = _config(hub, request.params["id"])
    if_match = request.headers.get("if-match")
    if if_match:
        etag, quoted = _unquote_etag(if_match)
        if quoted and etag != "*" and etag != cfg["etag"]:  # an unquoted value is no entity tag: ignored
            raise HubError(412, "PreconditionFailed", f"Etag {if_match} does not match {cfg['etag']!r}")
    del hub.configurations[cfg["id"]]
    hub.changed()
    return Response(204)


def test_queries(request: Request, hub: Hub) -> Response:
    body = _body(request)
    target_error = ""
    try:
        compile_target_condition(body.get("targetCondition") or "")
    except QueryError as exc:
        target_error = str(exc)
    metric_errors = {}
    for name, query in (body.get("customMetricQueries") or {}).items():
        try:
            parse_query(query)
        except QueryError as exc:
            metric_errors[name] = str(exc)
    return Response(200, {"targetConditionError": target_error, "customMetricQueryErrors": metric_errors})


def apply_configuration_content(request: Request, hub: Hub) -> Response:
    device = _device(hub, request.params["id"])
    body = _body(request)
    if not device.is_edge:
        raise HubError(400, "InvalidConfigurationContent", f"Device {device.device_id!r} is not an IoT Edge device")
    if body.get("modulesContent") is None:
        raise HubError(400, "InvalidConfigurationContent", "modulesContent is required")
    _validate_content({"modulesContent": body["modulesContent"]})
    if is_layered({"content": body}):
        raise HubError(400, "InvalidConfigurationContent", "Layered content cannot be applied to a single device")
    device.modules_content = copy.deepcopy(body["modulesContent"])
    hub.changed()
    return Response(204)


# ---- devices


def put_device(request: Request, hub: Hub) -> Response:
    device_id = request.params["id"]
    body = _body(request)
    if not DEVICE_ID_RE.match(device_id):
        raise HubError(400, "ArgumentInvalid", f"Invalid device id {device_id!r}")
    if body.get("deviceId") not in (None, device_id):
        raise HubError(400, "ArgumentInvalid", f"Device id in body {body.get('deviceId')!r} != {device_id!r}")
    if_match = request.headers.get("if-match")
    existing = hub.devices.get(device_id)
    if existing is None:
        if if_match and _unquote_etag(if_match)[0] != "*":
            raise HubError(404, "DeviceNotFound", f"Device {device_id!r} not found")
        device = Device(device_id, identity={})
        device.identity = _make_identity(device_id, body, device.generation_id)
        hub.devices[device_id] = device
    else:
        if not if_match:
            raise HubError(409, "DeviceAlreadyExists", f"A device with id {device_id!r} already exists")
        _check_if_match(if_match, existing.etag)
        existing.identity = _make_identity(device_id, body, existing.generation_id)
        existing.etag_n += 1
        device = existing
    hub.changed()
    return Response(200, render_device(device))


def get_device(request: Request, hub: Hub) -> Response:
    return Response(200, render_device(_device(hub, request.params["id"])))


def list_devices(request: Request, hub: Hub) -> Response:
    top = request.q("top")
    limit = min(int(top), 1000) if top and top.isdigit() else 1000
    return Response(200, [render_device(d) for d in list(hub.devices.values())[:limit]])


def delete_device(request: Request, hub: Hub) -> Response:
    device = _device(hub, request.params["id"])
    _check_if_match(request.headers.get("if-match"), device.etag)
    del hub.devices[device.device_id]
    hub.changed()
    return Response(204)


# ---- twins


def get_twin(request: Request, hub: Hub) -> Response:
    return Response(200, render_twin(_device(hub, request.params["id"]), hub.assignment()))


def _apply_twin_write(request: Request, hub: Hub, replace: bool) -> Response:
    device = _device(hub, request.params["id"])
    _check_twin_if_match(request.headers.get("if-match"), device.twin_etag)
    body = _body(request)
    props = body.get("properties") or {}
    if not isinstance(props, dict) or props.get("reported"):
        raise HubError(400, "ArgumentInvalid", "Reported properties are read-only for the service")
    tags_patch = body.get("tags")
    desired_patch = props.get("desired")
    tags, desired = device.tags, device.desired
    if replace:
        tags = copy.deepcopy(tags_patch or {})
        desired = {k: v for k, v in (desired_patch or {}).items() if not k.startswith("$")}
    else:
        if tags_patch is not None:
            tags = merge_patch(tags, tags_patch)
        if desired_patch is not None:
            desired = merge_patch(desired, {k: v for k, v in desired_patch.items() if not k.startswith("$")})
    _validate_twin_section(tags, MAX_TAGS_BYTES, "tags")
    _validate_twin_section(desired, MAX_DESIRED_BYTES, "desired properties")
    if desired != device.desired:
        device.desired_version += 1
    if tags != device.tags or desired != device.desired:
        device.tags, device.desired = tags, desired
        device.touch_twin()
        hub.changed()
    return Response(200, render_twin(device, hub.assignment()))


def patch_twin(request: Request, hub: Hub) -> Response:
    return _apply_twin_write(request, hub, replace=False)


def replace_twin(request: Request, hub: Hub) -> Response:
    return _apply_twin_write(request, hub, replace=True)


def get_module_twin(request: Request, hub: Hub) -> Response:
    device = _device(hub, request.params["id"])
    module = request.params["module"]
    if module != "$edgeAgent" or not device.is_edge:
        raise HubError(404, "ModuleNotFound", f"Module {module!r} not found on {device.device_id!r} "
                                              "(the emulator models only $edgeAgent)")
    return Response(200, render_edge_agent_twin(hub, device))


# ---- query


def query_devices(request: Request, hub: Hub) -> Response:
    """``POST /devices/query``; keyset paging via ``x-ms-max-item-count`` / ``x-ms-continuation``."""
    query = _body(request).get("query")
    if not isinstance(query, str):
        raise HubError(400, "BadRequest", "The body must be {\"query\": \"SELECT ...\"}")
    raw_size = request.headers.get("x-ms-max-item-count")
    try:
        size = int(raw_size) if raw_size else DEFAULT_PAGE_SIZE
    except ValueError:
        raise HubError(400, "ArgumentInvalid", f"Invalid x-ms-max-item-count {raw_size!r}") from None
    size = max(1, min(size, MAX_PAGE_SIZE))  # "the service may use a different value"
    try:
        results = hub.run_query(query)
        star = any(p.kind == "star" for p in parse_query(query).projections)
    except QueryError as exc:
        raise HubError(400, "BadRequest", f"Invalid query {query!r}: {exc}") from exc
    start = 0
    token = request.headers.get("x-ms-continuation")
    if token:
        after = _decode_continuation(query, token)
        start = bisect_right([k for k, _ in results], after)
    page = results[start:start + size]
    headers = {"x-ms-item-type": "twin" if star else "raw"}
    if start + size < len(results):
        headers["x-ms-continuation"] = _continuation_token(query, page[-1][0])
    return Response(200, [item for _, item in page], headers)


# =============================================================================== routes

_ID = r"(?P<id>[^/]+)"

ROUTES: list[Route] = [
    _route("POST", r"/configurations/testQueries", test_queries),
    _route("GET", r"/configurations/?", list_configurations),
    _route("PUT", rf"/configurations/{_ID}", put_configuration),
    _route("GET", rf"/configurations/{_ID}", get_configuration),
    _route("DELETE", rf"/configurations/{_ID}", delete_configuration),
    _route("POST", r"/devices/query", query_devices),
    _route("POST", rf"/devices/{_ID}/applyConfigurationContent", apply_configuration_content),
    _route("GET", r"/devices/?", list_devices),
    _route("PUT", rf"/devices/{_ID}", put_device),
    _route("GET", rf"/devices/{_ID}", get_device),
    _route("DELETE", rf"/devices/{_ID}", delete_device),
    _route("GET", rf"/twins/{_ID}/modules/(?P<module>[^/]+)", get_module_twin),
    _route("GET", rf"/twins/{_ID}", get_twin),
    _route("PATCH", rf"/twins/{_ID}", patch_twin),
    _route("PUT", rf"/twins/{_ID}", replace_twin),
]
