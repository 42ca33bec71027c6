"""IoT Hub target conditions: parse, check against the hub's rules, and evaluate on twins.

The subset IoT Hub accepts for edge deployments: comparisons of ``deviceId``, ``tags.*``
and ``properties.reported.*`` with single-quoted strings, numbers, booleans and null,
combined with AND, OR, NOT and parentheses, plus ``IS_DEFINED(path)``, or ``*`` alone.
Two things the portal's query preview accepts but the configurations API rejects are
refused here with a message that says what to write instead: double quotes and ``IN``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

KEYWORDS = {"AND", "OR", "NOT"}
COMPARISONS = ("<=", ">=", "!=", "<>", "=", "<", ">")
PATH_ROOTS = ("deviceId", "tags", "properties")


class ConditionError(ValueError):
    """A target condition IoT Hub would refuse. ``offset`` is the 0-based character."""

    def __init__(self, message: str, offset: int):
        self.offset = offset
        super().__init__(message)


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "number", "op", "(", ")", ",", "*"
    text: str
    offset: int


@dataclass(frozen=True)
class Comparison:
    left: Operand
    op: str
    right: Operand


@dataclass(frozen=True)
class IsDefined:
    path: tuple[str, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # "AND" | "OR"
    left: Condition
    right: Condition


@dataclass(frozen=True)
class Not:
    operand: Condition


@dataclass(frozen=True)
class Everything:
    pass


@dataclass(frozen=True)
class PathRef:
    path: tuple[str, ...]


@dataclass(frozen=True)
class Literal:
    value: Any


Operand = PathRef | Literal
Condition = Comparison | IsDefined | BoolOp | Not | Everything

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<word>[A-Za-z_$][A-Za-z0-9_$-]*(?:\.[A-Za-z0-9_$-]+)*)
      | (?P<punct>[(),*\[\]])
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == '"':
            raise ConditionError(
                "double quotes are not allowed in a target condition (IoT Hub rejects them); "
                "quote values with single quotes, e.g. tags.site='a'",
                position,
            )
        match = _TOKEN.match(text, position)
        if not match:
            raise ConditionError(f"unexpected character {char!r}", position)
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "word" and value.upper() == "IN":
            raise ConditionError(
                "IN is not supported in deployment target conditions (IoT Hub rejects it); "
                "write a chain of OR instead, e.g. tags.site='a' OR tags.site='b'",
                position,
            )
        if kind == "punct":
            if value in "[]":
                raise ConditionError(f"unexpected character {value!r}", position)
            kind = value
        if kind != "space":
            tokens.append(Token(kind, value, position))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, roots: tuple[str, ...] = PATH_ROOTS):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.roots = roots

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ConditionError("the condition ends too early", len(self.text))
        self.index += 1
        return token

    def expect(self, kind: str, opening: Token | None = None) -> Token:
        """The next token, which must be ``kind``; ``opening`` is the '(' a ')' closes."""
        closes = f" to close the '(' at character {opening.offset + 1}" if opening is not None else ""
        if self.peek() is None:
            raise ConditionError(f"expected {kind!r}{closes} before the end of the condition", len(self.text))
        token = self.take()
        if token.kind != kind:
            raise ConditionError(f"expected {kind!r}{closes} but found {token.text!r}", token.offset)
        return token

    def is_keyword(self, word: str) -> bool:
        # Asked at every level for each operand (OR, AND, NOT): the length rules out field names without upper()
        # (a plan's coverage queries chain hundreds of comparisons).
        if self.index >= len(self.tokens):
            return False
        token = self.tokens[self.index]
        return token.kind == "word" and len(token.text) == len(word) and token.text.upper() == word

    def parse(self) -> Condition:
        if not self.tokens:
            raise ConditionError("the condition is empty", 0)
        if len(self.tokens) == 1 and self.tokens[0].kind == "*":
            return Everything()
        condition = self.parse_or()
        token = self.peek()
        if token is not None and token.kind == ")":
            raise ConditionError("unbalanced parentheses: this ')' closes no '('", token.offset)
        if token is not None:
            raise ConditionError(f"unexpected {token.text!r}; expected AND, OR or the end", token.offset)
        return condition

    def parse_or(self) -> Condition:
        left = self.parse_and()
        while self.is_keyword("OR"):
            self.take()
            left = BoolOp("OR", left, self.parse_and())
        return left

    def parse_and(self) -> Condition:
        left = self.parse_not()
        while self.is_keyword("AND"):
            self.take()
            left = BoolOp("AND", left, self.parse_not())
        return left

    def parse_not(self) -> Condition:
        if self.is_keyword("NOT"):
            self.take()
            return Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> Condition:
        token = self.peek()
        if token is None:
            raise ConditionError("the condition ends too early", len(self.text))
        if token.kind == "(":
            self.take()
            condition = self.parse_or()
            self.expect(")", opening=token)
            return condition
        if token.kind == "word" and token.text.upper() == "IS_DEFINED":
            self.take()
            opening = self.expect("(")
            path = self.parse_path(self.take())
            self.expect(")", opening=opening)
            return IsDefined(path.path)
        left = self.parse_operand()
        op = self.take()
        if op.kind != "op":
            raise ConditionError(f"expected a comparison (=, !=, <, >, <=, >=) after the operand, found {op.text!r}",
                                 op.offset)
        right = self.parse_operand()
        if isinstance(left, Literal) and isinstance(right, Literal):
            raise ConditionError("a comparison needs a field such as tags.site or deviceId", token.offset)
        return Comparison(left, "!=" if op.text == "<>" else op.text, right)

    def parse_operand(self) -> Operand:
        token = self.take()
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            return Literal(float(token.text) if "." in token.text else int(token.text))
        if token.kind == "word":
            upper = token.text.upper()
            if upper in ("TRUE", "FALSE"):
                return Literal(upper == "TRUE")
            if upper == "NULL":
                return Literal(None)
            return self.parse_path(token)
        raise ConditionError(f"expected a field or a value, found {token.text!r}", token.offset)

    def parse_path(self, token: Token) -> PathRef:
        if token.kind != "word" or token.text.upper() in KEYWORDS:
            raise ConditionError(f"expected a field, found {token.text!r}", token.offset)
        parts = tuple(token.text.split("."))
        root = parts[0]
        if root == "configurations" and root in self.roots:
            if len(parts) != 3 or parts[2] != "status":
                raise ConditionError("a configuration's field is configurations.[[<id>]].status", token.offset)
            return PathRef(parts)
        if root not in PATH_ROOTS:
            raise ConditionError(
                f"unknown field {token.text!r}: a target condition filters on deviceId, tags.* "
                "or properties.reported.*",
                token.offset,
            )
        if root == "deviceId" and len(parts) != 1:
            raise ConditionError(f"unknown field {token.text!r}", token.offset)
        if root == "tags" and len(parts) < 2:
            raise ConditionError("name a tag, e.g. tags.site", token.offset)
        if root == "properties" and (len(parts) < 3 or parts[1] != "reported"):
            raise ConditionError("only reported properties can be used: properties.reported.<name>", token.offset)
        return PathRef(parts)


def parse(text: str) -> Condition:
    """Parse a target condition; raise ``ConditionError`` with the offending position."""
    return _Parser(text).parse()


_METRIC_QUERY = re.compile(r"(?is)^\s*SELECT\s+deviceId\s+FROM\s+devices\s+WHERE\s+(?P<where>.+)$")
_CONFIGURATION_PATH = re.compile(r"configurations\.\[\[(?P<id>[A-Za-z0-9_-]+)\]\]")


def parse_metric_query(text: str) -> Condition:
    """The WHERE clause of a custom metric query of the form IoT Hub documents for device counts,
    ``SELECT deviceId FROM devices WHERE <condition>``, where the condition may also read a
    configuration's status on the device: ``configurations.[[<id>]].status = 'Applied'``.
    Other queries (``devices.modules``, aggregates) raise ``ConditionError``."""
    match = _METRIC_QUERY.match(text)
    if match is None:
        raise ConditionError("only metric queries of the form SELECT deviceId FROM devices WHERE ... are evaluated",
                             0)
    where = _CONFIGURATION_PATH.sub(lambda m: f"configurations.{m.group('id')}", match.group("where"))
    return _Parser(where, (*PATH_ROOTS, "configurations")).parse()


def device_ids_condition(device_ids: tuple[str, ...] | list[str]) -> str:
    """The target condition that selects exactly these devices (OR chain: IoT Hub refuses IN)."""
    return " OR ".join(f"deviceId='{quote(device_id)}'" for device_id in device_ids)


def quote(value: str) -> str:
    return value.replace("'", "''")


# --- evaluation on device twins -------------------------------------------------------

_MISSING = object()


def _lookup(twin: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = twin
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _value(operand: Operand, twin: Mapping[str, Any]) -> Any:
    return operand.value if isinstance(operand, Literal) else _lookup(twin, operand.path)


def matches(condition: Condition, twin: Mapping[str, Any]) -> bool:
    """Whether a twin (``{"deviceId", "tags", "properties": {"reported"}}``) is selected.

    As in IoT Hub's query language, a comparison with a missing field is false, and values
    of different types never compare equal."""
    if isinstance(condition, Everything):
        return True
    if isinstance(condition, BoolOp):
        if condition.op == "AND":
            return matches(condition.left, twin) and matches(condition.right, twin)
        return matches(condition.left, twin) or matches(condition.right, twin)
    if isinstance(condition, Not):
        return not matches(condition.operand, twin)
    if isinstance(condition, IsDefined):
        return _lookup(twin, condition.path) is not _MISSING
    left, right = _value(condition.left, twin), _value(condition.right, twin)
    if left is _MISSING or right is _MISSING:
        return False
    numeric = (int, float)
    same_type = type(left) is type(right) or (
        isinstance(left, numeric) and isinstance(right, numeric)
        and not isinstance(left, bool) and not isinstance(right, bool)
    )
    if not same_type:
        return condition.op == "!="
    try:
        return _COMPARE[condition.op](left, right)
    except TypeError:
        return False


def uses_device_id(condition: Condition) -> bool:
    """Whether a condition reads ``deviceId`` (else devices with the same tags and reported
    properties are selected alike)."""
    if isinstance(condition, BoolOp):
        return uses_device_id(condition.left) or uses_device_id(condition.right)
    if isinstance(condition, Not):
        return uses_device_id(condition.operand)
    if isinstance(condition, IsDefined):
        return condition.path[0] == "deviceId"
    if isinstance(condition, Comparison):
        return any(isinstance(side, PathRef) and side.path[0] == "deviceId"
                   for side in (condition.left, condition.right))
    return False
