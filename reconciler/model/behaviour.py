"""Model behaviour as an Image spec declares it: its samples and its gates.

Values only (standard library): the runs themselves are ``reconciler.behaviour``'s, what they gave
``model.behaviour_results``' (kept apart: a plan without samples to run does not build those classes),
the comparison and the gates ``core.behaviour``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON = Any  # a JSON-compatible value (as ``model.specs.JSON``, which imports this module)

DEFAULT_REPEAT = 5
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_START_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class ChangedOutputsLimit:
    """``gates.maxChangedOutputs``: a count of samples, or a percentage of them."""

    value: float
    percent: bool

    def allows(self, changed: int, total: int) -> bool:
        if self.percent:
            return total == 0 or changed * 100 <= self.value * total
        return changed <= self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


@dataclass(frozen=True)
class Gates:
    """Thresholds a new image version must meet. ``None``: no limit."""

    max_changed_outputs: ChangedOutputsLimit | None = None
    max_latency_p95_ms: float | None = None
    must_match_expected: bool = True


@dataclass(frozen=True)
class SamplesSpec:
    """``spec.samples``: a folder of ``<name>.json`` request bodies, each with an optional
    ``<name>.expected.json`` (the response it must give)."""

    path: Path
    repeat: int = DEFAULT_REPEAT  # requests per sample, for the latency figures
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS  # per request
    start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS  # server start-up, init() included


@dataclass(frozen=True)
class Sample:
    """One request body, as bytes (sent as is), and the expected response if there is one."""

    name: str
    body: bytes
    expected: JSON = None
    has_expected: bool = False
