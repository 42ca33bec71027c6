"""Plan renderers: Terraform-like text for terminals, markdown for PR comments, JSON.

All three are deterministic (sorted, no timestamps) so a re-posted PR comment does not
churn, and none can show a secret: plans never contain one.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.core.plan_json import plan_to_dict
from reconciler.model.plan import Action, Change, FieldChange, Plan

MAX_VALUE = 80
MARKDOWN_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters
MARKDOWN_FIELDS_PER_CHANGE = 20

_VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "will be replaced (create before delete)",
    Action.DELETE: "will be deleted",
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
    if change.new_version:
        verb = "gets a new version"
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
    lines.append(plan.summary)
    return "\n".join(lines) + "\n"


def _notes(plan: Plan) -> list[str]:
    lines = []
    if plan.orphans:
        lines.append("Owned but no longer in the specs (kept; apply with --prune to delete):")
        lines += [f"  {name}" for name in plan.orphans]
        lines.append("")
    if plan.unmanaged:
        lines.append("Unmanaged (not created by this environment; never changed):")
        lines += [f"  {name}" for name in plan.unmanaged]
        lines.append("")
    for warning in plan.warnings:
        lines.append(f"Warning: {warning}")
    if plan.warnings:
        lines.append("")
    return lines


def render_json(plan: Plan, environment_dir: str) -> str:
    return json.dumps(plan_to_dict(plan, environment_dir), indent=2, sort_keys=False) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """Summary first, a table of every change, details collapsed; stays under ``limit``."""
    head = [f"### edge-reconciler plan for `{plan.environment}`", "", f"**{plan.summary}**", ""]
    if not plan.changes:
        return "\n".join(head + _markdown_notes(plan)) + "\n"
    table = ["| | Resource | Target | Devices | Why |", "|---|---|---|---|---|"]
    table += [f"| `{c.action.symbol}` | `{c.key}` | `{c.target}` | {'' if c.devices is None else c.devices} "
              f"| {_cell(c.reason)} |" for c in plan.changes]
    notes = _markdown_notes(plan)
    details_open = ["", "<details><summary>Field changes</summary>", "", "```diff"]
    details_close = ["```", "", "</details>", ""]
    budget = limit - len("\n".join(head + table + notes + details_open + details_close)) - 200
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
    if len(head) + len(table) > 0 and len("\n".join(head + table)) > limit - 1000:
        table = table[:2] + [f"| | {len(plan.changes)} changes: too many to list | | | |"]
    return "\n".join(head + table + notes + details_open + body + details_close) + "\n"


def _markdown_notes(plan: Plan) -> list[str]:
    lines = []
    if plan.orphans:
        lines += ["", "**Kept, no longer in the specs** (apply with `--prune` to delete): "
                      + ", ".join(f"`{o}`" for o in plan.orphans)]
    if plan.unmanaged:
        lines += ["", f"**Unmanaged, never changed:** {len(plan.unmanaged)} resource(s): "
                      + ", ".join(f"`{u}`" for u in plan.unmanaged[:20])
                      + (" ..." if len(plan.unmanaged) > 20 else "")]
    lines += ["", *[f"> Warning: {w}" for w in plan.warnings]] if plan.warnings else []
    return lines
