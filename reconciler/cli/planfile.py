"""The saved plan file, read and written here only: ``plan --out FILE`` writes it, ``apply FILE`` reads
it. Its JSON form is ``core.plan_json`` (documented in docs/plan-format.md)."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.cli.views import plan as plan_view
from reconciler.core.plan_json import SavedPlan
from reconciler.errors import PlanRefused
from reconciler.model.plan import Plan


def save(path: Path, plan: Plan, environment_dir: str) -> None:
    path.write_text(plan_view.render_json(plan, environment_dir), encoding="utf-8")


def load(path: Path) -> SavedPlan:
    try:
        return SavedPlan.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PlanRefused(f"{path}: not a plan saved by `reconciler plan --out` ({exc})") from None
