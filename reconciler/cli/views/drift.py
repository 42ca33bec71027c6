"""Drift report renderers: text, markdown (for the nightly issue) and JSON."""

from __future__ import annotations

import json

from reconciler.core.drift import DriftReport

MARKDOWN_LIMIT = 60_000


def _rollout_rows(report: DriftReport) -> list[tuple[str, str, int, int, int, int, int]]:
    return [(r.name, r.id, r.priority, r.health.targeted, r.health.applied, r.health.succeeded, r.health.failed)
            for r in report.rollouts]


def render_text(report: DriftReport) -> str:
    lines = []
    if report.items:
        lines.append(f"Drift in environment {report.environment!r}: {len(report.items)} difference(s)")
        lines += [f"  {item.category:<9} {item.resource}: {item.message}" for item in report.items]
    else:
        lines.append(f"No drift in environment {report.environment!r}: the actual state matches the specs.")
    if report.rollouts:
        lines += ["", "Rollouts:", f"  {'deployment':<40} {'priority':>8} {'targeted':>8} {'applied':>8} "
                                   f"{'success':>8} {'failed':>8}"]
        lines += [f"  {id_:<40} {priority:>8} {targeted:>8} {applied:>8} {ok:>8} {failed:>8}"
                  for _, id_, priority, targeted, applied, ok, failed in _rollout_rows(report)]
    return "\n".join(lines) + "\n"


def render_markdown(report: DriftReport, limit: int = MARKDOWN_LIMIT) -> str:
    status = f"{len(report.items)} difference(s)" if report.items else "no drift"
    lines = [f"### edge-reconciler drift for `{report.environment}`: {status}", ""]
    if report.items:
        lines += ["| Resource | What | Detail |", "|---|---|---|"]
        for item in report.items:
            detail = item.message.replace("|", "\\|")
            row = f"| `{item.resource}` | {item.category} | {detail} |"
            if len("\n".join(lines)) + len(row) > limit - 2000:
                lines.append(f"| | | ... {len(report.items)} items in all; run `reconciler drift` for the rest |")
                break
            lines.append(row)
        lines.append("")
    if report.rollouts:
        lines += ["<details><summary>Rollouts</summary>", "",
                  "| Deployment | Priority | Targeted | Applied | Succeeded | Failed |", "|---|---|---|---|---|---|"]
        lines += [f"| `{id_}` | {p} | {t} | {a} | {s} | {f} |" for _, id_, p, t, a, s, f in _rollout_rows(report)]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render_json(report: DriftReport) -> str:
    data = {
        "environment": report.environment,
        "drift": report.has_drift,
        "items": [{"resource": i.resource, "category": i.category, "message": i.message} for i in report.items],
        "rollouts": [{"name": n, "id": i, "priority": p, "targeted": t, "applied": a, "succeeded": s, "failed": f}
                     for n, i, p, t, a, s, f in _rollout_rows(report)],
    }
    return json.dumps(data, indent=2) + "\n"
