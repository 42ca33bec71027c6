"""``reconciler doctor``'s checklist: one line per check with ✓ ✗ ! ·, and what to do under each failure."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.providers.base import Check

SYMBOLS = {Check.OK: "✓", Check.FAIL: "✗", Check.WARN: "!", Check.INFO: "·"}


def failed(checks: Sequence[Check]) -> list[Check]:
    return [check for check in checks if check.status == Check.FAIL]


def render_text(environment: str, provider: str, checks: Sequence[Check]) -> str:
    lines = [f"reconciler doctor: environment {environment} ({provider} backend)", ""]
    for check in checks:
        lines.append(f"{SYMBOLS.get(check.status, '?')} {check.name}: {check.detail}")
        if check.fix:
            lines.append(f"    → {check.fix}")
    failures, warnings = len(failed(checks)), sum(1 for c in checks if c.status == Check.WARN)
    lines.append("")
    if failures:
        lines.append(f"{failures} check{'s' if failures != 1 else ''} failed: an apply would fail too; "
                     "fix what the → lines say and run `reconciler doctor` again.")
    else:
        lines.append("Every check passed" + (f" ({warnings} warning{'s' if warnings != 1 else ''})." if warnings
                                             else "."))
    return "\n".join(lines) + "\n"


def render_json(environment: str, provider: str, checks: Sequence[Check]) -> str:
    data = {
        "environment": environment,
        "provider": provider,
        "ok": not failed(checks),
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
