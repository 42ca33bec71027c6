"""Behaviour in words: ``reconciler test`` results, and the plan's behaviour section in text
and markdown (the JSON form is ``core.behaviour.report_to_dict``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.model.behaviour import JSON
from reconciler.model.behaviour_results import BehaviourReport, ImageBehaviour, Latency
from reconciler.model.plan import Plan

MAX_JSON = 160


def compact(value: JSON) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ": "))
    return text if len(text) <= MAX_JSON else text[: MAX_JSON - 3] + "..."


def latency(value: Latency | None) -> str:
    return "-" if value is None else f"p50 {value.p50_ms:g} ms, p95 {value.p95_ms:g} ms"


def render_test(results: Sequence[ImageBehaviour]) -> str:
    lines = []
    for result in results:
        verdict = "FAILED" if result.failures else "passed"
        lines.append(f"image/{result.image}: {verdict}: {result.samples} sample(s), {result.unexpected} differ from "
                     f"expected, {result.errors} error(s); latency {latency(result.after)} "
                     f"({result.after.requests} requests)")
        lines += [f"  - {failure}" for failure in result.failures]
        if result.first_error:
            lines += [f"    {line}" for line in result.first_error.splitlines()]
        if result.note:
            lines.append(f"  note: {result.note}")
    return "\n".join(lines) + "\n"


def _summary(image: ImageBehaviour) -> str:
    changed = "no deployed version to compare" if image.changed is None else f"{image.changed} output(s) changed"
    timing = latency(image.after) if image.before is None else f"{latency(image.before)} -> {latency(image.after)}"
    return f"{image.samples} sample(s), {changed}, {image.unexpected} differ from expected; latency {timing}"


def render_text(report: BehaviourReport) -> list[str]:
    """Lines for the text plan, after the changes."""
    lines = []
    if report.skipped:
        lines.append(f"Behaviour: skipped (--skip-behaviour); samples not run for: {', '.join(report.skipped)}")
        lines.append("")
    for image in report.images:
        status = "FAILS A GATE" if image.failures else "ok"
        lines.append(f"Behaviour of image/{image.image} ({image.target}): {status}")
        lines.append(f"  {_summary(image)}" + (" (cached)" if image.cached else ""))
        for difference in image.differences:
            lines.append(f"  ~ {difference.name}: {compact(difference.before)} -> {compact(difference.after)}")
            lines.append(f"      request: {compact(difference.request)}")
        shown = len(image.differences)
        if image.changed is not None and image.changed > shown:
            lines.append(f"  ... {image.changed - shown} more changed sample(s)")
        lines += [f"  ! {failure}" for failure in image.failures]
        if image.note:
            lines.append(f"  note: {image.note}")
        lines.append("")
    return lines


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def render_markdown(report: BehaviourReport) -> list[str]:
    """Lines for the PR comment: one table row per image, then the first differing samples."""
    lines = ["", "#### Model behaviour", ""]
    if report.skipped:
        lines += [f"> **Skipped** (`--skip-behaviour`): samples not run for {', '.join(report.skipped)}", ""]
    if not report.images:
        return lines
    lines += ["| Image | Samples | Changed | Differ from expected | Latency p50 / p95 (ms) | Gates |",
              "|---|---|---|---|---|---|"]
    for image in report.images:
        before = f"{image.before.p50_ms:g} / {image.before.p95_ms:g} → " if image.before else ""
        changed = "n/a" if image.changed is None else str(image.changed)
        gates = "**failed**" if image.failures else "passed"
        lines.append(f"| `{image.target}` | {image.samples} | {changed} | {image.unexpected} | "
                     f"{before}{image.after.p50_ms:g} / {image.after.p95_ms:g} | {gates} |")
    lines.append("")
    for image in report.images:
        for failure in image.failures:
            lines.append(f"> :x: `{image.image}`: {_md(failure)}")
        if image.note:
            lines.append(f"> Note: {_md(image.note)}")
        if image.differences:
            lines += ["", f"<details><summary>{image.image}: first changed samples</summary>", "",
                      "| Sample | Request | Deployed | New |", "|---|---|---|---|"]
            lines += [f"| `{d.name}` | `{_md(compact(d.request))}` | `{_md(compact(d.before))}` | "
                      f"`{_md(compact(d.after))}` |" for d in image.differences]
            lines += ["", "</details>"]
    return lines


def plan_text(plan: Plan) -> list[str]:
    return render_text(plan.behaviour) if plan.behaviour is not None else []


def plan_markdown(plan: Plan) -> list[str]:
    return render_markdown(plan.behaviour) if plan.behaviour is not None else []
