"""Plan renderers: Terraform-like text for terminals, markdown for PR comments, JSON.

All three are deterministic (sorted, no timestamps) so a re-posted PR comment does not
churn, and none can show a secret: plans never contain one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from reconciler.model.plan import Action, Change, DesiredPromotion, FieldChange, Plan

MAX_VALUE = 80
MARKDOWN_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters
MARKDOWN_FIELDS_PER_CHANGE = 20
MARKDOWN_OPEN_ROWS = 20  # more changes than this: counts per kind first, the full table collapsed
MARKDOWN_NAMES = 50  # orphans and warnings listed at most
MARKDOWN_REASON = 120  # the longest 'Why' in the tables of a large plan (the details have the rest)

_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.NEW_VERSION: "gets a new version",
    Action.REPLACE: "will be replaced (create before delete)",
    Action.DELETE: "will be deleted",
    Action.ROLLOUT: "rollout step",
}


def value(raw: Any) -> str:
    text = json.dumps(raw, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def field_line(field: FieldChange) -> str:
    if field.before is None:
        return f"+ {field.path} = {value(field.after)}"
    if field.after is None:
        return f"- {field.path} = {value(field.before)}"
    return f"~ {field.path} = {value(field.before)} -> {value(field.after)}"


def heading(change: Change) -> str:
    verb = _VERB[change.action]
    reach = ""
    if change.devices is not None:
        reach = f"; reaches {change.devices} device{'s' if change.devices != 1 else ''}"
    return f"# {change.key} {verb}: {change.reason}{reach}"


def change_block(change: Change, max_fields: int | None = None) -> list[str]:
    lines = [heading(change), f"{change.action.symbol} {change.key} ({change.target})"]
    fields = change.fields if max_fields is None else change.fields[:max_fields]
    lines += [f"    {field_line(f)}" for f in fields]
    if max_fields is not None and len(change.fields) > max_fields:
        lines.append(f"    ... {len(change.fields) - max_fields} more field(s)")
    return lines


def render_text(plan: Plan) -> str:
    lines: list[str] = []
    if plan.changes:
        lines.append(f"edge-reconciler will perform these actions on environment {plan.environment!r}:")
        lines.append("")
        for change in plan.changes:
            lines += [f"  {line}" for line in change_block(change)]
            lines.append("")
    lines += _notes(plan)
    if plan.behaviour is not None:  # its view is imported only for a plan that ran samples
        from reconciler.cli.views import behaviour as behaviour_view

        lines += behaviour_view.plan_text(plan)
    lines.append(plan.summary)
    return "\n".join(lines) + "\n"


def _notes(plan: Plan) -> list[str]:
    lines = []
    if plan.rollouts:
        from reconciler.cli.views import rollouts

        lines.append("Rollouts:")
        for status in plan.rollouts:
            lines += [f"  {line}" for line in rollouts.status_lines(status)]
        lines.append("")
    if plan.orphans:
        lines.append("Owned but no longer in the specs (kept; apply with --prune to delete):")
        lines += [f"  {key}" for key in plan.orphans]
        lines.append("")
    if plan.unmanaged:
        lines.append("Unmanaged (not created by this environment; never changed):")
        lines += [f"  {name}" for name in plan.unmanaged]
        lines.append("")
    for warning in plan.warnings:
        lines.append(f"Warning: {warning.summary}")
    if plan.warnings:
        lines.append("")
    return lines


def render_json(plan: Plan, environment_dir: str) -> str:
    from reconciler.core.plan_json import plan_to_dict

    return json.dumps(plan_to_dict(plan, environment_dir), indent=2, sort_keys=False) + "\n"


def _cell(text: str) -> str:
    """Text for a table cell: no column breaks, no line breaks, no HTML (GitHub would drop
    ``<secret:...>``-like text as an unknown tag)."""
    return _inline(text.replace("|", "\\|"))


def _inline(text: str) -> str:
    return text.replace("\n", " ").replace("<", "&lt;")


def _fence(lines: list[str]) -> str:
    """A code fence longer than any run of backticks inside, so no value can close it."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _row(change: Change, max_reason: int | None = None) -> str:
    devices = "" if change.devices is None else change.devices
    reason = change.reason
    if max_reason is not None and len(reason) > max_reason:
        reason = reason[: max_reason - 3] + "..."
    return f"| `{change.action.symbol}` | `{change.key}` | `{change.target}` | {devices} | {_cell(reason)} |"


_TABLE_HEAD = ["| | Resource | Target | Devices | Why |", "|---|---|---|---|---|"]


def _change_table(changes: Sequence[Change], budget: int, max_reason: int | None = None) -> list[str]:
    """Every change as a row while the table fits ``budget`` characters, then a count."""
    table = list(_TABLE_HEAD)
    size = sum(len(line) + 1 for line in table)
    for shown, change in enumerate(changes):
        row = _row(change, max_reason)
        if size + len(row) + 1 > budget:
            table.append(f"| | ... {len(changes) - shown} more change(s): see the saved plan artifact "
                         "or run `reconciler plan` | | | |")
            break
        table.append(row)
        size += len(row) + 1
    return table


def _kind_table(plan: Plan) -> list[str]:
    """Counts per kind and action, kinds in apply order."""
    kinds = sorted({change.key.kind for change in plan.changes}, key=lambda kind: kind.order)
    table = ["| Kind | Add | Change | Replace | Destroy |", "|---|---|---|---|---|"]
    for kind in kinds:
        of_kind = [c.action for c in plan.changes if c.key.kind == kind]
        counts = [of_kind.count(Action.CREATE), sum(1 for a in of_kind if a.is_change),
                  of_kind.count(Action.REPLACE), of_kind.count(Action.DELETE)]
        table.append(f"| {kind.label} | " + " | ".join(str(n) for n in counts) + " |")
    return table


def render_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """A PR comment: the summary first, then the changes, field details collapsed; under ``limit``.

    Up to ``MARKDOWN_OPEN_ROWS`` changes are listed in one open table. A larger plan opens
    with counts per kind and the replaced and destroyed resources (the ones to review
    first), and collapses the table of the other changes. Tables and details are cut with a
    count of what was left out, so the comment always fits GitHub's 65,536 characters.
    """
    head = [f"### edge-reconciler plan for `{plan.environment}`", "", f"**{plan.summary}**", ""]
    notes = _markdown_notes(plan)
    if not plan.changes:
        return "\n".join(head + notes) + "\n"
    details_open = ["", "<details><summary>Field changes</summary>", ""]
    details_close = ["", "</details>", ""]
    from reconciler.cli.views import behaviour as behaviour_view

    notes = behaviour_view.plan_markdown(plan) + notes
    fixed = len("\n".join(head + notes + details_open + details_close)) + 400
    if len(plan.changes) <= MARKDOWN_OPEN_ROWS:
        top = _change_table(plan.changes, (limit - fixed) // 2)
    else:
        risky = [c for c in plan.changes if c.action in (Action.REPLACE, Action.DELETE)]
        others = [c for c in plan.changes if c.action not in (Action.REPLACE, Action.DELETE)]
        top = _kind_table(plan)
        if risky:
            top += ["", f"**Replaced or destroyed: {len(risky)}** (review these first)", ""]
            top += _change_table(risky, (limit - fixed) * 2 // 5, MARKDOWN_REASON)
        if others:
            title = f"{'Other changes' if risky else 'Changes'}: {len(others)}"
            top += ["", f"<details><summary>{title}</summary>", ""]
            top += _change_table(others, (limit - fixed - len("\n".join(top))) // 2, MARKDOWN_REASON)
            top += ["", "</details>"]
    budget = limit - fixed - len("\n".join(top))
    body: list[str] = []
    shown = 0
    for change in plan.changes:
        block = change_block(change, MARKDOWN_FIELDS_PER_CHANGE) + [""]
        size = len("\n".join(block)) + 1
        if size > budget:
            break
        body += block
        budget -= size
        shown += 1
    if shown < len(plan.changes):
        body.append(f"... details of {len(plan.changes) - shown} more change(s) left out to fit a comment; "
                    "see the saved plan artifact or run `reconciler plan` locally.")
    fence = _fence(body)
    details = details_open + [fence + "diff", *body, fence] + details_close
    return "\n".join(head + top + notes + details) + "\n"


def _names(names: Sequence[str], at_most: int) -> str:
    shown = ", ".join(f"`{name}`" for name in names[:at_most])
    return shown + (f" ... and {len(names) - at_most} more" if len(names) > at_most else "")


def _promotion_lines(plan: Plan) -> list[str]:
    """What a reviewer checks in a promotion: the digest this environment will run is the one built there."""
    promoted = [c for c in plan.changes if isinstance(c.desired, DesiredPromotion)]
    lines = []
    for change in promoted:
        assert isinstance(change.desired, DesiredPromotion)
        source = change.desired.source
        lines.append(f"- `{change.key}` runs `{source.digest}`, copied from `{source.reference}` (environment "
                     f"`{source.environment}`): the same bytes, not rebuilt")
    return ["", "**Promoted, not built:**", "", *lines] if lines else []


def _markdown_notes(plan: Plan) -> list[str]:
    from reconciler.cli.views import rollouts

    lines = _promotion_lines(plan) + rollouts.markdown_lines(plan.rollouts)
    if plan.orphans:
        lines += ["", "**Kept, no longer in the specs** (apply with `--prune` to delete): "
                      + _names([str(key) for key in plan.orphans], MARKDOWN_NAMES)]
    if plan.unmanaged:
        lines += ["", f"**Unmanaged, never changed:** {len(plan.unmanaged)} resource(s): "
                      + ", ".join(f"`{u}`" for u in plan.unmanaged[:20])
                      + (" ..." if len(plan.unmanaged) > 20 else "")]
    if plan.warnings:
        lines += ["", *[f"> Warning: {_inline(w.summary)}" for w in plan.warnings[:MARKDOWN_NAMES]]]
        if len(plan.warnings) > MARKDOWN_NAMES:
            lines.append(f"> ... and {len(plan.warnings) - MARKDOWN_NAMES} more warning(s)")
    return lines
