"""Golden planner cases: every folder of ``tests/cases/plan/`` is one scenario of the pure planner.

A case holds the desired specs (``env/``), the actual state as JSON (``actual.json``, see
``tests/core/snapshot_json.py``), its options and the outline of the expected plan
(``case.yaml``), and the plan rendered as text and JSON (``expected.txt``, ``expected.json``).
Layout and conventions: ``tests/cases/plan/README.md``.

Regenerate the expected files after an intended change of the planner or its views with

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/core/test_plan_cases.py

then read the diff. The outline in ``case.yaml`` (changes, orphans, unmanaged, warnings) is
checked first, also while regenerating, so a regenerated golden file cannot quietly lose the
behaviour its case is about: change the outline by hand when the behaviour changes on purpose.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from reconciler.cli.views.plan import render_json, render_text
from reconciler.core import planner
from reconciler.model.plan import Plan
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.core.snapshot_json import load_snapshot
from tests.golden_files import check_golden_file

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "cases" / "plan"
SHARED_PREFIX = "_"  # folders like _shared/ hold files several cases use; they are not cases
CASE_KEYS = {"description", "prune", "expect"}
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
    changes: tuple[str, ...]  # "<action> <kind>/<name>", in apply order
    orphans: tuple[str, ...]
    unmanaged: tuple[str, ...]
    warnings: tuple[str, ...]  # a part of each warning's text, in order


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
        changes=tuple(expect["changes"]),
        orphans=tuple(expect.get("orphans", ())),
        unmanaged=tuple(expect.get("unmanaged", ())),
        warnings=tuple(expect.get("warnings", ())),
    )


def plan_case(name: str, cases: Path = CASES) -> Plan:
    """The plan of case ``name``: its specs (fingerprinted with a cold cache) against actual.json."""
    case = read_case(name, cases)
    desired = load_environment(cases / name / "env")
    fingerprints = compute_fingerprints(desired, HashCache())
    snapshot = load_snapshot(cases / name / "actual.json")
    return planner.plan(desired, fingerprints, snapshot, prune=case.prune)


def outline(plan: Plan) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return tuple(f"{c.action.value} {c.key}" for c in plan.changes), plan.orphans, plan.unmanaged


def test_the_corpus_covers_enough_cases() -> None:
    names = case_names()
    assert len(names) >= 15
    for name in names:
        for required in ("env/environment.yaml", "actual.json", "case.yaml"):
            assert (CASES / name / required).is_file(), f"{name}: missing {required}"
    # Each action appears somewhere, and so do the plan's other sections.
    plans = [plan_case(name) for name in names]
    actions = {c.action.value for plan in plans for c in plan.changes}
    assert actions == {"create", "update", "replace", "delete"}
    assert any(not plan.changes for plan in plans)
    assert any(plan.orphans for plan in plans) and any(plan.unmanaged for plan in plans)
    assert any(plan.warnings for plan in plans) and any(plan.prune for plan in plans)


@pytest.mark.parametrize("name", case_names())
def test_plan_case(name: str) -> None:
    case = read_case(name)
    plan = plan_case(name)
    assert outline(plan) == (case.changes, case.orphans, case.unmanaged), f"{name}: the plan's outline moved"
    assert len(plan.warnings) == len(case.warnings), plan.warnings
    for warning, part in zip(plan.warnings, case.warnings, strict=True):
        assert part in warning
    check_golden_file(CASES / name / "expected.txt", render_text(plan), f"{name}/expected.txt")
    check_golden_file(CASES / name / "expected.json", render_json(plan, environment_dir(name)),
                      f"{name}/expected.json")


def test_plans_do_not_depend_on_where_the_cases_are(tmp_path: Path) -> None:
    """Fingerprints hash file names relative to the model folder or source directory, never
    absolute paths, so the expected files need no normalisation: the cases copied into another
    repository give byte-identical plans."""
    (tmp_path / "elsewhere" / ".git").mkdir(parents=True)
    copied = tmp_path / "elsewhere" / "cases"
    shutil.copytree(CASES, copied)
    for name in case_names():
        here, there = plan_case(name), plan_case(name, copied)
        assert render_text(there) == render_text(here)
        assert render_json(there, environment_dir(name)) == render_json(here, environment_dir(name))
        assert str(REPO) not in render_json(here, environment_dir(name))

