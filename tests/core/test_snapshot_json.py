"""tests/core/snapshot_json.py: the actual.json of the planner cases reads back losslessly and strictly."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.core import planner
from reconciler.model.state import DeploymentHealth, Snapshot
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.core.plan_cases import CASES, case_names
from tests.core.snapshot_json import (
    converged,
    dump_snapshot,
    empty_snapshot,
    load_snapshot,
    main,
    snapshot_from_dict,
)


def converged_dict() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CASES / "converged-no-changes" / "actual.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("name", case_names())
def test_every_actual_json_reads_back_losslessly(name: str) -> None:
    path = CASES / name / "actual.json"
    snapshot = load_snapshot(path)
    assert isinstance(snapshot, Snapshot)
    assert json.loads(dump_snapshot(snapshot)) == json.loads(path.read_text(encoding="utf-8"))
    assert all(isinstance(part, tuple) for part in (snapshot.models, snapshot.images, snapshot.deployments))


def test_a_dump_loads_back_to_an_equal_snapshot_with_the_same_fingerprint() -> None:
    snapshot = snapshot_from_dict(converged_dict())
    again = snapshot_from_dict(json.loads(dump_snapshot(snapshot)))
    assert again == snapshot and again.fingerprint() == snapshot.fingerprint()
    assert dump_snapshot(again).endswith("}\n")


def test_health_becomes_a_dataclass_with_a_tuple() -> None:
    data = converged_dict()
    data["deployments"][0]["health"] = {"targeted": 3, "applied": 3, "succeeded": 2, "failed": 1,
                                        "shadowed_by": ["hand-made"], "metrics": {"errors": 1}}
    deployment = snapshot_from_dict(data).deployments[0]
    assert deployment.health == DeploymentHealth(3, 3, 2, 1, ("hand-made",), {"errors": 1})


@pytest.mark.parametrize(("where", "edit", "message"), [
    ("snapshot", lambda d: d.update(unmanaged=[]), r"unknown keys \['unmanaged'\]"),
    ("snapshot", lambda d: d.pop("registries"), r"missing keys \['registries'\]"),
    ("models[0]", lambda d: d["models"][0].update(versoin=2), r"models\[0\]: unknown keys \['versoin'\]"),
    ("deployments[1]", lambda d: d["deployments"][1].pop("health"), r"deployments\[1\]: .*missing keys \['health'\]"),
    ("deployments[0].health", lambda d: d["deployments"][0].update(health={"targeted": 1}),
     r"deployments\[0\]\.health: .*missing keys \['applied', 'failed', 'metrics', 'shadowed_by', 'succeeded'\]"),
    ("images", lambda d: d.update(images={}), "images: expected a list"),
    ("registries.local", lambda d: d["registries"]["local"].update(name="other"), "the registry is named 'other'"),
])
def test_mistakes_in_a_hand_edited_file_are_errors(where: str, edit: Callable[[dict[str, Any]], object],
                                                   message: str) -> None:
    data = copy.deepcopy(converged_dict())
    edit(data)
    with pytest.raises(ValueError, match=message):
        snapshot_from_dict(data)


def test_converged_plans_nothing_and_empty_plans_every_create(sample_env: Path) -> None:
    desired = load_environment(sample_env)
    fingerprints = compute_fingerprints(desired, HashCache())
    assert planner.plan(desired, fingerprints, converged(desired, fingerprints)).changes == ()
    empty = planner.plan(desired, fingerprints, empty_snapshot())
    assert {c.action.value for c in empty.changes} == {"create"} and len(empty.changes) == 4


def test_the_generator_prints_the_committed_converged_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(CASES / "converged-no-changes" / "env")]) == 0
    assert capsys.readouterr().out == (CASES / "converged-no-changes" / "actual.json").read_text(encoding="utf-8")
    assert main(["--empty", str(CASES / "first-apply-empty-backend" / "env")]) == 0
    assert capsys.readouterr().out == (CASES / "first-apply-empty-backend" / "actual.json").read_text(encoding="utf-8")
