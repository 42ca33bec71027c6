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
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from reconciler.cli.views.plan import render_json, render_text
from reconciler.model.plan import Action
from tests.core.plan_cases import (
    CASES,
    REPO,
    case_names,
    environment_dir,
    outline,
    plan_case,
    read_case,
    read_now,
)
from tests.golden_files import check_golden_file


def test_the_corpus_covers_enough_cases() -> None:
    names = case_names()
    assert len(names) >= 15
    for name in names:
        for required in ("env/environment.yaml", "actual.json", "case.yaml"):
            assert (CASES / name / required).is_file(), f"{name}: missing {required}"
    # Each action appears somewhere, and so do the plan's other sections.
    plans = [plan_case(name) for name in names]
    actions = {c.action.value for plan in plans for c in plan.changes}
    assert actions == {action.value for action in Action}
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
        assert part in warning.summary
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



@pytest.mark.parametrize("text", ["2026-01-01T12:40:00Z", "'2026-01-01T12:40:00Z'", "2026-01-01T12:40:00",
                                  "'2026-01-01T13:40:00+01:00'", "2026-01-01 12:40:00"])
def test_now_is_an_iso_time_in_utc_unless_it_says_otherwise(text: str) -> None:
    """``now:`` reads the same quoted or not (YAML makes an unquoted one a timestamp), and a time
    without an offset is UTC, like the times of actual.json."""
    now = read_now("case", yaml.safe_load(f"now: {text}")["now"])
    assert now == datetime(2026, 1, 1, 12, 40, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["'soon'", "12", "[2026]"])
def test_now_that_is_not_a_time_is_refused(text: str) -> None:
    with pytest.raises(AssertionError, match="case/case.yaml: now"):
        read_now("case", yaml.safe_load(f"now: {text}")["now"])
