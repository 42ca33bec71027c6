"""Load YAML spec files safely, keeping the source position of every value.

PyYAML's safe loader builds plain values and forgets where they came from. We compose the
node graph instead (which keeps marks), then build values ourselves so that:

* each value's location is recorded under its path (``("spec", "modules", "scorer")``),
  so schema errors can point at the offending line and column;
* duplicate mapping keys are reported (PyYAML silently keeps the last one); loading goes
  on with the first value, so the rest of the document is still checked;
* alias expansion is budgeted: a "billion laughs" file references a few nodes billions of
  times, which costs nothing to compose and everything to construct. We count the values
  we build and stop at ``MAX_VALUES``, so such a file fails in milliseconds.

Files larger than ``MAX_FILE_BYTES`` or not valid UTF-8 are refused before parsing.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.model.diagnostics import Diagnostic, SourceLocation

# The C composer (libyaml) when PyYAML has it: the same node graph with marks, much faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 1024 * 1024
MAX_VALUES = 100_000
MAX_DEPTH = 64

Path_ = tuple[str | int, ...]


class YamlProblem(Exception):
    """A file that cannot be turned into documents at all."""

    def __init__(self, location: SourceLocation, message: str):
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}")


@dataclass
class Document:
    """One YAML document with the location of each value, keyed by its path."""

    file: Path
    display: str  # how the file is named in messages
    index: int  # position of the document in its file (0-based)
    data: Any
    # (line, column) of each value and key, 1-based: SourceLocation values are made only for the few
    # paths a message names (a document has hundreds of nodes, a spec folder thousands of documents).
    locations: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_locations: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    # Problems that do not stop loading (duplicate keys): location, path of the value, message.
    problems: list[tuple[SourceLocation, Path_, str]] = field(default_factory=list)

    def location(self, path: Path_, *, key: bool = False) -> SourceLocation:
        """The location of ``path``, or of its nearest ancestor that has one.

        With ``key=True`` the location of the mapping key itself (useful to point at an
        unknown field rather than at its value)."""
        table = self.key_locations if key else self.locations
        probe = tuple(path)
        while probe:
            found = table.get(probe) or self.locations.get(probe)
            if found:
                return SourceLocation(self.display, *found)
            probe = probe[:-1]
        return SourceLocation(self.display, *self.locations.get((), (1, 1)))


def _position(node: Node) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def _location(display: str, node: Node) -> SourceLocation:
    return SourceLocation(display, *_position(node))


class _Builder:
    """Turns a composed node graph into plain values with a budget."""

    def __init__(self, document: Document):
        self.document = document
        self.count = 0
        self.scalars = SafeConstructor()

    def build(self, node: Node, path: Path_, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise YamlProblem(
                _location(self.document.display, node),
                f"document expands to more than {MAX_VALUES} values "
                "(aliases that reference each other, a 'billion laughs' file?); refusing to load it",
            )
        if depth > MAX_DEPTH:
            raise YamlProblem(_location(self.document.display, node), f"nesting deeper than {MAX_DEPTH} levels")
        self.document.locations.setdefault(path, _position(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        value = self.scalars.construct_object(node, deep=True)
        if isinstance(value, (datetime.date, datetime.datetime)):
            return node.value  # keep dates as written: specs are JSON-like
        if isinstance(value, bytes):
            raise YamlProblem(_location(self.document.display, node), "binary (!!binary) values are not supported")
        return value

    def _mapping(self, node: MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlProblem(_location(self.document.display, key_node),
                                  "merge keys (<<) are not supported: write the keys out")
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem(_location(self.document.display, key_node), "mapping keys must be plain strings")
            key = str(key_node.value)
            if key in result:
                first_line, _ = self.document.key_locations[(*path, key)]
                self.document.problems.append((
                    _location(self.document.display, key_node), (*path, key),
                    f"duplicate key: {key!r} is already set at line {first_line}; YAML keeps only one "
                    "value, remove the other",
                ))
                continue
            self.document.key_locations[(*path, key)] = _position(key_node)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result


def read_text(file: Path, display: str) -> str:
    """The file's text, refusing files that are too large or not UTF-8."""
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise YamlProblem(
            SourceLocation(display, 1, 1),
            f"file is {size} bytes, more than the {MAX_FILE_BYTES} bytes a spec file may have; "
            "split its documents into several files",
        )
    raw = file.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlProblem(
            SourceLocation(display, line, column),
            f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save it with the UTF-8 encoding",
        ) from None


def load_documents(file: Path, display: str, text: str | None = None) -> Iterator[Document]:
    """Yield the non-empty documents of a YAML file (its ``text``, when already read), with locations."""
    if text is None:
        text = read_text(file, display)
    try:
        nodes = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.MarkedYAMLError as exc:
        raise YamlProblem(*_syntax_error(display, text, exc)) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(SourceLocation(display), f"not valid YAML: {exc}") from None
    for index, node in enumerate(nodes):
        if node is None:
            continue
        document = Document(file=file, display=display, index=index, data=None)
        try:
            document.data = _Builder(document).build(node, ())
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            location = SourceLocation(display, mark.line + 1, mark.column + 1) if mark else _location(display, node)
            raise YamlProblem(location, f"not valid YAML: {exc.problem}") from None
        yield document


def _syntax_error(display: str, text: str, exc: yaml.MarkedYAMLError) -> tuple[SourceLocation, str]:
    """Where PyYAML stopped, and its message with the construct it was reading."""
    mark = exc.problem_mark or exc.context_mark
    location = SourceLocation(display, mark.line + 1, mark.column + 1) if mark else SourceLocation(display)
    message = f"not valid YAML: {exc.problem or exc.context or 'invalid YAML'}"
    context = exc.context_mark
    if exc.problem and exc.context and context is not None and (mark is None or context.line != mark.line):
        message += f" ({exc.context} at line {context.line + 1})"
    if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
        message += "; YAML cannot indent with tabs, use spaces"
    return location, message


def problem_diagnostic(problem: YamlProblem) -> Diagnostic:
    return Diagnostic(problem.location, "", "", problem.message)
