"""Run an image version's samples: lay out its app and models as the image does
(``providers.layout``), start the scoring server, POST every sample, stop the server.

A version is an Image spec (entry script, source directory, conda file) with a set of model
versions and a way to copy their files: from the spec's folders for the new version, from the
backend for the deployed one.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.behaviour.server import ScoringServer
from reconciler.errors import BehaviourError
from reconciler.model.behaviour import Sample, SamplesSpec
from reconciler.model.behaviour_results import Latency, RunResult, SampleResult
from reconciler.model.specs import ImageSpec
from reconciler.providers.layout import (
    APP,
    MODELS,
    PackagedModel,
    app_files,
    image_environment,
    write_app,
    write_models,
)
from reconciler.spec.paths import display_path

ERROR_CHARS = 300


@dataclass(frozen=True)
class ImageVersionFiles:
    """What a scoring server of one image version needs: the spec's app and conda file, the
    model versions, and ``copy(key, destination)`` for their files."""

    spec: ImageSpec
    models: tuple[PackagedModel, ...]
    copy: Callable[[str, Path], None]


def copy_file(source: str, destination: Path) -> None:
    """``copy`` for models not registered yet: the key is the file's path."""
    shutil.copyfile(source, destination)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: it is a measured request)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def lay_out(version: ImageVersionFiles, work: Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """Write the app and the models under ``work``; return the entry script, the server's
    environment variables, and the app files' paths in the repository (for tracebacks)."""
    entry = write_app(work, version.spec)
    write_models(work, version.models, version.copy)
    (work / MODELS).mkdir(exist_ok=True)
    env = image_environment(entry, version.models, app_root=str(work / APP), models_root=str(work / MODELS))
    files, _ = app_files(version.spec)
    sources = {relative: display_path(source) for relative, source in files.items()}
    return entry, env, sources


def server_for(version: ImageVersionFiles, python: Path, work: Path, *, port: int | None = None,
               quiet: bool = True) -> ScoringServer:
    entry, env, sources = lay_out(version, work)
    (work / "home").mkdir(exist_ok=True)
    samples = version.spec.samples or SamplesSpec(work)
    return ScoringServer(python, work / APP, entry, env, sources=sources, port=port, quiet=quiet,
                         request_timeout=samples.timeout_seconds, start_timeout=samples.start_timeout_seconds,
                         home=work / "home")


def _answer(server: ScoringServer, sample: Sample) -> tuple[SampleResult, float]:
    seen = server.lines_seen
    try:
        status, data, seconds = server.score(sample.body)
    except TimeoutError:
        raise BehaviourError(f"sample {sample.name}: no answer within {server.request_timeout:g} s "
                             "(spec.samples.timeoutSeconds); run() may hang or be too slow for this sample",
                             detail=server.log_tail(10)) from None
    except OSError as exc:
        raise BehaviourError(f"sample {sample.name}: the scoring server stopped answering ({exc}); "
                             "see its last log lines below", detail=server.log_tail()) from None
    text = data.decode("utf-8", "replace")
    if status != 200:
        trace = server.traceback_since(seen)
        first = text.strip().splitlines()[0][:ERROR_CHARS] if text.strip() else "(no body)"
        return SampleResult(sample.name, error=f"HTTP {status}: {first}", detail=trace), seconds
    try:
        return SampleResult(sample.name, output=json.loads(text)), seconds
    except ValueError:
        return SampleResult(sample.name, error=f"answered HTTP 200 with a body that is not JSON: "
                                               f"{text[:80]!r}; run() must return JSON-serialisable values"), seconds


def run_samples(server: ScoringServer, samples: Sequence[Sample], repeat: int) -> RunResult:
    """POST every sample ``repeat`` times (after one request to warm up); the output of each
    sample is its first answer, the latency is over every timed request."""
    if samples:
        _answer(server, samples[0])  # the first request pays for lazy imports: not a latency figure
    results = []
    timings: list[float] = []
    for sample in samples:
        first, seconds = _answer(server, sample)
        results.append(first)
        timings.append(seconds)
        if first.error is None:
            for _ in range(repeat - 1):
                _, seconds = _answer(server, sample)
                timings.append(seconds)
    latency = Latency(round(percentile(timings, 0.5) * 1000, 2), round(percentile(timings, 0.95) * 1000, 2),
                      len(timings))
    return RunResult(tuple(results), latency)


def run_version(version: ImageVersionFiles, python: Path, samples: Sequence[Sample], repeat: int,
                work_root: Path | None = None) -> tuple[RunResult, float]:
    """Run the samples on one version in a throw-away work folder; (result, start-up seconds)."""
    work = Path(tempfile.mkdtemp(prefix="reconciler-behaviour-", dir=work_root))
    try:
        with server_for(version, python, work) as server:
            startup = server.wait_ready()
            return run_samples(server, samples, repeat), startup
    finally:
        shutil.rmtree(work, ignore_errors=True)
