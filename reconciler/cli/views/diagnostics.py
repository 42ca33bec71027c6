"""How problems are shown: one line per diagnostic, or GitHub workflow annotations."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from reconciler.errors import BehaviourError, ReconcilerError, SpecError
from reconciler.model.diagnostics import Diagnostic


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(diagnostic: Diagnostic, level: str = "error") -> str:
    """``::error file=..,line=..,col=..::message``, shown by GitHub on the PR's diff line."""
    location = diagnostic.location
    where = f"file={_escape_property(location.file)},line={location.line},col={location.column}"
    text = ": ".join(part for part in (diagnostic.subject, diagnostic.field, diagnostic.message) if part)
    return f"::{level} {where}::{_escape_data(text)}"


def render_diagnostics(diagnostics: Iterable[Diagnostic], output_format: str) -> list[str]:
    if output_format == "github":
        return [github_annotation(d) for d in diagnostics]
    return [str(d) for d in diagnostics]


def print_error(error: ReconcilerError, output_format: str = "text", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    if isinstance(error, SpecError):
        for line in render_diagnostics(error.diagnostics, output_format):
            # Annotations are read from stdout by GitHub Actions; plain diagnostics go to stderr.
            print(line, file=sys.stdout if output_format == "github" else stream)
        print(f"error: {error}", file=stream)
        return
    if output_format == "github":
        print(f"::error::{_escape_data(str(error))}", file=sys.stdout)
    print(f"error: {error}", file=stream)
    if isinstance(error, BehaviourError) and error.detail:
        print("\n".join(f"  {line}" for line in error.detail.splitlines()), file=stream)


def print_backend_usage(usage: tuple[int, int] | None, throttling: tuple[int, float] | None = None) -> None:
    """The device queries a run spent of its budget, and the requests the service throttled (backends that meter
    them), on stderr."""
    if usage is not None:
        spent, budget = usage
        print(f"IoT Hub device queries this run: {spent} of {budget}", file=sys.stderr)
    if throttling is not None and throttling[0]:
        count, seconds = throttling
        print(f"Azure throttled {count} request{'s' if count != 1 else ''} this run; each was sent again after the "
              f"wait Azure asked for ({seconds:.1f} s in all)", file=sys.stderr)
