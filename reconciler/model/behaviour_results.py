"""What a run of an image's samples gave, and how the new version's outputs differ from the deployed
one's: the plan's ``behaviour`` section (``model.behaviour`` holds the samples and gates specs declare).

Values only (standard library).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.model.behaviour import JSON


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
