"""The planner case corpus (``tests/cases/plan/``): finding, reading and planning a case.

Used by ``test_plan_cases.py`` (the golden files) and by the unit tests that want real plans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from reconciler.core import planner
from reconciler.core.model_sources import registered_fingerprints
from reconciler.model.plan import Plan
from reconciler.model.state import PromotionSource
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.core.snapshot_json import load_snapshot

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "cases" / "plan"
SHARED_PREFIX = "_"  # folders like _shared/ hold files several cases use; they are not cases
CASE_KEYS = {"description", "prune", "now", "expect"}
EXPECT_KEYS = {"changes", "orphans", "unmanaged", "warnings"}


def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if p.is_dir() and not p.name.startswith(SHARED_PREFIX))


def environment_dir(name: str) -> str:
    """The ``environment_dir`` written into expected.json: fixed and relative, so the file does
    not depend on where the repository is checked out."""
    return f"tests/cases/plan/{name}/env"


@dataclass(frozen=True)
class Case:
    """``case.yaml``: what the case is about, its options, and the outline of the expected plan."""

    name: str
    description: str
    prune: bool
    now: datetime | None  # the time rollouts are judged at (planner.plan's ``now``); None: the planner's default
    changes: tuple[str, ...]  # "<action> <kind>/<name>", in apply order
    orphans: tuple[str, ...]
    unmanaged: tuple[str, ...]
    warnings: tuple[str, ...]  # a part of each warning's text, in order


def read_now(name: str, value: object) -> datetime | None:
    """``now:`` of case.yaml: an ISO 8601 time, quoted or not (YAML reads an unquoted one as a
    timestamp); without an offset it is UTC, like the times of actual.json."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise AssertionError(f"{name}/case.yaml: now {value!r} is not an ISO 8601 time") from None
    assert isinstance(value, datetime), f"{name}/case.yaml: now must be an ISO 8601 time, not {value!r}"
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def read_case(name: str, cases: Path = CASES) -> Case:
    data = yaml.safe_load((cases / name / "case.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and set(data) <= CASE_KEYS, f"{name}/case.yaml: keys are {sorted(CASE_KEYS)}"
    expect = data.get("expect") or {}
    assert set(expect) <= EXPECT_KEYS, f"{name}/case.yaml: expect keys are {sorted(EXPECT_KEYS)}"
    assert "changes" in expect, f"{name}/case.yaml: expect.changes is required ([] for no changes)"
    assert str(data.get("description", "")).strip(), f"{name}/case.yaml: say what the case is about"
    return Case(
        name=name,
        description=str(data["description"]),
        prune=bool(data.get("prune", False)),
        now=read_now(name, data.get("now")),
        changes=tuple(expect["changes"]),
        orphans=tuple(expect.get("orphans", ())),
        unmanaged=tuple(expect.get("unmanaged", ())),
        warnings=tuple(expect.get("warnings", ())),
    )


def plan_case(name: str, cases: Path = CASES) -> Plan:
    """The plan of case ``name``: its specs (fingerprinted with a cold cache; registered sources as actual.json
    reports them, as the engine does) against actual.json."""
    case = read_case(name, cases)
    desired = load_environment(cases / name / "env")
    snapshot = load_snapshot(cases / name / "actual.json")
    fingerprints = compute_fingerprints(desired, HashCache(), registered=registered_fingerprints(desired, snapshot))
    return planner.plan(desired, fingerprints, snapshot, prune=case.prune, now=case.now,
                        sources=read_sources(cases / name / "sources.json"))


def read_sources(path: Path) -> dict[str, PromotionSource]:
    """``sources.json`` (optional): for each promoted image of the case (``spec.promoteFrom``), what its
    source environment's backend holds, as the engine reads it: a ``PromotionSource`` as JSON, every field
    but ``locator`` (which plans never show)."""
    if not path.is_file():
        return {}
    fields = {"environment", "image", "label", "digest", "reference"}
    sources = {}
    for name, raw in json.loads(path.read_text(encoding="utf-8")).items():
        assert isinstance(raw, dict) and set(raw) == fields, f"{path}: {name} needs exactly {sorted(fields)}"
        sources[name] = PromotionSource(**raw)
    return sources


def outline(plan: Plan) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return tuple(f"{c.action.value} {c.key}" for c in plan.changes), tuple(map(str, plan.orphans)), plan.unmanaged
