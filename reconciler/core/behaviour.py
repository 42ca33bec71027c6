"""Behaviour, the pure part: compare a new version's answers with the expected ones and with
the deployed version's, apply the gates, and the JSON form of the plan's behaviour section.

    {"skipped": ["iris-scorer"],           # only with --skip-behaviour
     "images": [{"image": "iris-scorer", "target": "iris-scorer:3b7d2a9e01c4",
                 "samples": 6, "changed": 1, "unexpected": 1, "errors": 0,
                 "latency_ms": {"before": {"p50": 1.9, "p95": 2.6, "requests": 30},
                                "after": {"p50": 2.0, "p95": 2.7, "requests": 30}},
                 "differences": [{"sample": "one-of-each", "request": {...},
                                  "before": [...], "after": [...]}],
                 "failures": ["3 of 6 outputs changed; gates.maxChangedOutputs allows 0"],
                 "note": ""}]}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.model.behaviour import JSON, Gates, Sample
from reconciler.model.behaviour_results import (
    BehaviourReport,
    ImageBehaviour,
    Latency,
    RunResult,
    SampleDifference,
    SampleResult,
)

MAX_DIFFERENCES = 3


def _shown(result: SampleResult | None) -> JSON:
    if result is None:
        return None
    return result.output if result.error is None else {"error": result.error}


def _request(sample: Sample) -> JSON:
    try:
        return json.loads(sample.body)
    except ValueError:
        return sample.body.decode("utf-8", "replace")


def evaluate(image: str, target: str, samples: Sequence[Sample], after: RunResult, before: RunResult | None,
             gates: Gates, *, note: str = "", cached: bool = False,
             max_differences: int = MAX_DIFFERENCES) -> ImageBehaviour:
    """How the new version (``after``) did; ``before``: the deployed version's run, if any."""
    unexpected = [s.name for s in samples if s.has_expected
                  and (r := after.result(s.name)) is not None and r.error is None and r.output != s.expected]
    errors = [r.name for r in after.samples if r.error is not None]
    failed = next((r for r in after.samples if r.error is not None), None)
    first_error = f"sample {failed.name}: {failed.error}\n{failed.detail}".strip() if failed else ""
    differences: list[SampleDifference] = []
    changed: int | None = None
    if before is not None:
        changed = 0
        for sample in samples:
            old, new = before.result(sample.name), after.result(sample.name)
            if _shown(old) != _shown(new):
                changed += 1
                if len(differences) < max_differences:
                    differences.append(SampleDifference(sample.name, _request(sample), _shown(old), _shown(new)))
    failures = []
    if errors:
        failures.append(f"{len(errors)} sample(s) got no answer: {', '.join(errors[:5])}")
    if gates.must_match_expected and unexpected:
        failures.append(f"{len(unexpected)} sample(s) differ from their .expected.json: {', '.join(unexpected[:5])} "
                        "(gates.mustMatchExpected)")
    limit = gates.max_changed_outputs
    if limit is not None and changed is not None and not limit.allows(changed, len(samples)):
        failures.append(f"{changed} of {len(samples)} outputs changed; gates.maxChangedOutputs allows {limit}")
    if gates.max_latency_p95_ms is not None and after.latency.p95_ms > gates.max_latency_p95_ms:
        failures.append(f"p95 latency {after.latency.p95_ms:g} ms is over gates.maxLatencyP95Ms "
                        f"({gates.max_latency_p95_ms:g} ms)")
    return ImageBehaviour(image=image, target=target, samples=len(samples), changed=changed,
                          unexpected=len(unexpected), errors=len(errors),
                          before=before.latency if before is not None else None, after=after.latency,
                          differences=tuple(differences), failures=tuple(failures), note=note, cached=cached,
                          first_error=first_error)


def _latency(latency: Latency | None) -> dict[str, Any] | None:
    if latency is None:
        return None
    return {"p50": latency.p50_ms, "p95": latency.p95_ms, "requests": latency.requests}


def image_to_dict(image: ImageBehaviour) -> dict[str, Any]:
    return {
        "image": image.image, "target": image.target, "samples": image.samples, "changed": image.changed,
        "unexpected": image.unexpected, "errors": image.errors,
        "latency_ms": {"before": _latency(image.before), "after": _latency(image.after)},
        "differences": [{"sample": d.name, "request": d.request, "before": d.before, "after": d.after}
                        for d in image.differences],
        "failures": list(image.failures), "note": image.note,
    }


def report_to_dict(report: BehaviourReport) -> dict[str, Any]:
    data: dict[str, Any] = {"images": [image_to_dict(image) for image in report.images]}
    if report.skipped:
        data["skipped"] = list(report.skipped)
    return data


def run_to_dict(run: RunResult) -> dict[str, Any]:
    """A run in the behaviour cache."""
    return {"samples": [{"name": s.name, "output": s.output, "error": s.error, "detail": s.detail}
                        for s in run.samples],
            "latency": _latency(run.latency)}


def run_from_dict(data: dict[str, Any]) -> RunResult:
    latency = data["latency"]
    return RunResult(tuple(SampleResult(s["name"], s["output"], s["error"], s.get("detail", ""))
                           for s in data["samples"]),
                     Latency(float(latency["p50"]), float(latency["p95"]), int(latency["requests"])))
