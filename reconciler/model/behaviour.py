"""Model behaviour: samples and gates of an Image spec, what a run of them gave, and how the
new version's outputs differ from the deployed one's (the plan's ``behaviour``).

Values only (standard library): the runs themselves are ``reconciler.behaviour``'s, the
comparison and the gates ``core.behaviour``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class SampleResult:
    """What the server answered to one sample: a JSON ``output``, or an ``error`` (one line,
    with the user's traceback in ``detail`` when run() raised)."""

    name: str
    output: JSON = None
    error: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    requests: int


@dataclass(frozen=True)
class RunResult:
    """Every sample of one image version run once through the scoring server."""

    samples: tuple[SampleResult, ...]
    latency: Latency

    def result(self, name: str) -> SampleResult | None:
        return next((s for s in self.samples if s.name == name), None)


@dataclass(frozen=True)
class SampleDifference:
    """A sample whose output changed (or which failed on one side)."""

    name: str
    request: JSON
    before: JSON
    after: JSON


@dataclass(frozen=True)
class ImageBehaviour:
    """How one image's new version behaves, and how it differs from the deployed one.

    ``before`` is None when there is no deployed version to compare with (a new image) or
    the backend cannot give its model files (``note`` says why). ``failures`` are the gates
    the new version exceeds, one sentence each: any of them fails the plan.
    """

    image: str  # the Image spec name
    target: str  # "<name>:<new label>"
    samples: int
    changed: int | None  # outputs that differ from the deployed version's; None without a comparison
    unexpected: int  # outputs that differ from <name>.expected.json
    errors: int  # samples the new version failed to answer
    before: Latency | None
    after: Latency
    differences: tuple[SampleDifference, ...] = ()  # the first few, with both outputs
    failures: tuple[str, ...] = ()
    note: str = ""
    cached: bool = False  # both runs came from the cache
    first_error: str = ""  # the first failed sample: its one-line error and the user's traceback


@dataclass(frozen=True)
class BehaviourReport:
    """The plan's behaviour section: one entry per new image version that has samples.
    ``skipped`` is set when the plan was made with ``--skip-behaviour``: it names the images
    whose samples were not run."""

    images: tuple[ImageBehaviour, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(f"image/{image.image}: {failure}" for image in self.images for failure in image.failures)
