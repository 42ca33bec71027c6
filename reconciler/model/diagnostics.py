"""Source locations and diagnostics: what the user sees when a spec is wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SourceLocation:
    """A position in a spec file. ``file`` is shown as given (relative to the working
    directory when possible); ``line`` and ``column`` are 1-based."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem found in the specs.

    Rendered as ``file:line:column: kind/name: field: message``; ``subject`` is the
    ``kind/name`` of the document (empty when the document has no usable name) and
    ``field`` a dotted path inside it (empty for whole-file problems).
    """

    location: SourceLocation
    subject: str
    field: str
    message: str

    @property
    def summary(self) -> str:
        """``kind/name: field: message``, without the location (plan warnings are shown this way)."""
        return ": ".join(part for part in (self.subject, self.field, self.message) if part)

    def __str__(self) -> str:
        parts = [str(self.location)]
        if self.subject:
            parts.append(self.subject)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)
