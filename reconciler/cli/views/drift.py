"""Drift report renderers: text, markdown (for the nightly issue) and JSON."""

from __future__ import annotations

import json
from collections import Counter

from reconciler.cli.views import rollouts as staged_view
from reconciler.core.drift import DriftReport
from reconciler.core.plan_json import rollout_to_dict

MARKDOWN_LIMIT = 60_000  # GitHub refuses issue bodies and comments over 65,536 characters
MARKDOWN_DETAIL = 300  # the longest detail of one difference in the table
CATEGORIES = ("missing", "changed", "replaced", "orphaned", "shadowed")  # the order of the counts


NOT_EVALUATED = "not evaluated yet"


def _rollout_rows(report: DriftReport) -> list[tuple[str, str, int, int | str, int | str, int | str, int | str]]:
    """Figures per deployment; a deployment the hub has not evaluated yet says so (never zeros)."""
    rows: list[tuple[str, str, int, int | str, int | str, int | str, int | str]] = []
    for r in report.rollouts:
        if r.health is None:
            rows.append((r.name, r.id, r.priority, NOT_EVALUATED, "", "", ""))
        else:
            rows.append((r.name, r.id, r.priority, r.health.targeted, r.health.applied, r.health.succeeded,
                         r.health.failed))
    return rows


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
    if report.staged:
        lines += ["", "Staged rollouts:"]
        for status in report.staged:
            lines += [f"  {line}" for line in staged_view.status_lines(status)]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
    return text if len(text) <= MARKDOWN_DETAIL else text[: MARKDOWN_DETAIL - 3] + "..."


def render_markdown(report: DriftReport, limit: int = MARKDOWN_LIMIT) -> str:
    """The nightly issue's body: counts first, one row per difference, rollouts collapsed.

    Deterministic (the items and rollouts are sorted, no timestamps), so an unchanged
    drift gives an unchanged body; rows are cut with a count to stay under ``limit``.
    """
    status = f"{len(report.items)} difference(s)" if report.items else "no drift"
    lines = [f"### edge-reconciler drift for `{report.environment}`: {status}", ""]
    budget = limit - 2000
    if report.items:
        counts = Counter(item.category for item in report.items)
        order = sorted(counts, key=lambda c: (CATEGORIES.index(c) if c in CATEGORIES else len(CATEGORIES), c))
        lines += ["**" + ", ".join(f"{counts[c]} {c}" for c in order) + "**", ""]
        lines += ["| Resource | What | Detail |", "|---|---|---|"]
        for shown, item in enumerate(report.items):
            row = f"| `{item.resource}` | {item.category} | {_cell(item.message)} |"
            if len("\n".join(lines)) + len(row) > budget * 3 // 4:
                lines.append(f"| | | ... {len(report.items) - shown} more of {len(report.items)}; "
                             "run `reconciler drift` for the rest |")
                break
            lines.append(row)
        lines.append("")
    failing = report.failing
    if failing:
        lines += [f"**Failing rollouts: {len(failing)}** " + ", ".join(
            f"`{r.id}` ({r.health.failed} of {r.health.targeted} device(s) failed)"
            for r in failing[:20] if r.health is not None)
            + (" ..." if len(failing) > 20 else ""), ""]
    lines += staged_view.markdown_lines(report.staged)
    if report.staged:
        lines.append("")
    if report.rollouts:
        lines += ["<details><summary>Rollouts</summary>", "",
                  "| Deployment | Priority | Targeted | Applied | Succeeded | Failed |", "|---|---|---|---|---|---|"]
        rows = _rollout_rows(report)
        for shown, (_, id_, p, t, a, s, f) in enumerate(rows):
            row = f"| `{id_}` | {p} | {t} | {a} | {s} | {f} |"
            if len("\n".join(lines)) + len(row) > budget:
                lines.append(f"| ... {len(rows) - shown} more deployment(s) | | | | | |")
                break
            lines.append(row)
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render_json(report: DriftReport) -> str:
    data = {
        "environment": report.environment,
        "drift": report.has_drift,
        "items": [{"resource": i.resource, "category": i.category, "message": i.message} for i in report.items],
        "rollouts": [{"name": r.name, "id": r.id, "priority": r.priority, "evaluated": r.health is not None,
                      **({"targeted": r.health.targeted, "applied": r.health.applied, "succeeded": r.health.succeeded,
                          "failed": r.health.failed} if r.health is not None else {})}
                     for r in report.rollouts],
        **({"staged_rollouts": [rollout_to_dict(status) for status in report.staged]} if report.staged else {}),
    }
    return json.dumps(data, indent=2) + "\n"
