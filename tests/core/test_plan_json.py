"""reconciler.core.plan_json: the JSON form of a plan and what a saved plan promises.

Plans come from the golden planner cases (``tests/cases/plan/``), so every shape of change a
case covers goes through ``plan_to_dict`` and back through ``SavedPlan.from_dict``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from reconciler.core import planner
from reconciler.core.plan_json import FORMAT_VERSION, SavedPlan, actions_of, change_to_dict, plan_to_dict
from reconciler.hub import manifest
from reconciler.model.plan import Action, Change, DesiredDeployment, Plan
from reconciler.model.specs import Kind, ResourceKey
from reconciler.model.state import DeploymentHealth
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.core.plan_cases import CASES, REPO, case_names, environment_dir, plan_case
from tests.core.snapshot_json import converged, load_snapshot

PLAN_KEYS = ["format_version", "environment", "environment_dir", "prune", "state_fingerprint",
             "desired_fingerprint", "summary", "changes", "unchanged", "orphans", "unmanaged", "warnings"]
CHANGE_KEYS = ["resource", "kind", "name", "action", "symbol", "target", "reason", "new_version", "devices", "fields"]


def saved_json(plan: Plan, directory: str = "environments/local") -> dict[str, Any]:
    """The plan as a file would hold it: through ``json`` and back."""
    data: dict[str, Any] = json.loads(json.dumps(plan_to_dict(plan, directory)))
    return data


@pytest.mark.parametrize("name", case_names())
def test_a_saved_plan_round_trips_what_apply_compares(name: str) -> None:
    plan = plan_case(name)
    saved = SavedPlan.from_dict(saved_json(plan, environment_dir(name)))
    assert saved == SavedPlan(
        environment="local", environment_dir=environment_dir(name), prune=plan.prune,
        state_fingerprint=plan.state_fingerprint, desired_fingerprint=plan.desired_fingerprint,
        actions=actions_of(plan))
    assert len(saved.actions) == len(plan.changes)
    # The committed golden JSON is a valid saved plan of the same plan.
    golden = json.loads((CASES / name / "expected.json").read_text(encoding="utf-8"))
    assert SavedPlan.from_dict(golden) == saved


def test_actions_are_resource_action_target_in_apply_order() -> None:
    plan = plan_case("interrupted-replace-then-specs-changed")
    replaced, leftover = plan.changes
    assert actions_of(plan) == (
        ("deployment/iris-base", "replace", replaced.target),
        ("deployment/iris-base", "delete", leftover.target),
    )
    assert replaced.target != leftover.target  # the new id, then the id of the leftover


def test_a_saved_plan_keeps_only_what_apply_compares() -> None:
    """Reasons, fields, summaries and notes are for people; editing them changes nothing."""
    data = saved_json(plan_case("model-files-changed"))
    edited = copy.deepcopy(data)
    edited["changes"][0]["reason"] = "edited by hand"
    edited["changes"][0]["fields"] = []
    edited["summary"] = {}
    edited["unchanged"] = edited["warnings"] = edited["orphans"] = []
    assert SavedPlan.from_dict(edited) == SavedPlan.from_dict(data)

    retargeted = copy.deepcopy(data)
    retargeted["changes"][-1]["target"] = "iris-base-00000000"
    assert SavedPlan.from_dict(retargeted) != SavedPlan.from_dict(data)
    reordered = copy.deepcopy(data)
    reordered["changes"].reverse()
    assert SavedPlan.from_dict(reordered).actions == tuple(reversed(SavedPlan.from_dict(data).actions))


@pytest.mark.parametrize("version", [None, 0, FORMAT_VERSION + 1, str(FORMAT_VERSION)])
def test_other_format_versions_are_refused(version: object) -> None:
    data = saved_json(plan_case("converged-no-changes"))
    if version is None:
        del data["format_version"]
    else:
        data["format_version"] = version
    with pytest.raises(ValueError, match="unsupported plan format_version"):
        SavedPlan.from_dict(data)


def test_the_plan_dict_has_a_fixed_shape_and_counts() -> None:
    plan = plan_case("interrupted-replace-then-specs-changed")
    data = plan_to_dict(plan, "somewhere/env")
    assert list(data) == PLAN_KEYS
    assert data["format_version"] == FORMAT_VERSION == 1
    assert data["environment_dir"] == "somewhere/env"
    assert data["summary"] == {"add": 0, "change": 0, "replace": 1, "destroy": 1}
    assert [list(change) for change in data["changes"]] == [CHANGE_KEYS, CHANGE_KEYS]
    assert data["unchanged"] == ["model/iris-classifier", "image/iris-scorer", "deployment/iris-site-a-sensor"]


def test_a_change_as_a_dict() -> None:
    change = Change(ResourceKey(Kind.DEPLOYMENT, "iris-base"), Action.DELETE, "no longer in the specs", devices=3)
    assert change_to_dict(change) == {
        "resource": "deployment/iris-base", "kind": "deployment", "name": "iris-base", "action": "delete",
        "symbol": "-", "target": "iris-base", "reason": "no longer in the specs", "new_version": False,
        "devices": 3, "fields": []}
    model = plan_case("model-files-changed").changes[0]
    as_dict = change_to_dict(model)
    assert (as_dict["new_version"], as_dict["devices"], as_dict["target"]) == (True, None, "iris-classifier:1")
    assert as_dict["fields"] == [{"path": "fingerprint", "before": model.fields[0].before,
                                  "after": model.fields[0].after}]


@pytest.mark.parametrize("name", ["first-apply-empty-backend", "orphans-of-every-kind-pruned",
                                  "unmanaged-deployments-in-hub"])
def test_the_output_is_byte_stable(name: str) -> None:
    """Planning the same inputs again (fresh load, cold cache) gives the same bytes."""
    first = json.dumps(plan_to_dict(plan_case(name), environment_dir(name)), indent=2)
    second = json.dumps(plan_to_dict(plan_case(name), environment_dir(name)), indent=2)
    assert first == second
    assert str(REPO) not in first  # nothing machine-dependent: no absolute path


def test_the_state_fingerprint_follows_the_actual_state_but_not_rollout_health() -> None:
    name = "converged-no-changes"
    desired = load_environment(CASES / name / "env")
    fingerprints = compute_fingerprints(desired, HashCache())
    snapshot = load_snapshot(CASES / name / "actual.json")
    base = plan_to_dict(planner.plan(desired, fingerprints, snapshot), "env")
    with_health = replace(snapshot, deployments=tuple(replace(d, health=DeploymentHealth(3, 3, 2, 1))
                                                      for d in snapshot.deployments))
    assert plan_to_dict(planner.plan(desired, fingerprints, with_health), "env") == base
    moved = replace(snapshot, image_registry="other.azurecr.io")
    assert plan_to_dict(planner.plan(desired, fingerprints, moved), "env")["state_fingerprint"] != \
        base["state_fingerprint"]


def test_passwords_stay_placeholders() -> None:
    """The planner never sees a password: registry credentials in live content are read back
    redacted, and whatever the plan shows of them is the placeholder."""
    name = "converged-no-changes"
    desired = load_environment(CASES / name / "env")
    fingerprints = compute_fingerprints(desired, HashCache())
    snapshot = converged(desired, fingerprints)
    password = "hunter2-do-not-print"
    # What a provider reads from the hub: the real password, which it redacts before reporting.
    in_hub = [manifest.fill_passwords(d.content, {"local": password}) for d in snapshot.deployments]
    assert any(password in json.dumps(content) for content in in_hub)
    read_back = replace(snapshot, deployments=tuple(
        replace(d, content=manifest.redact_passwords(content)) for d, content in zip(snapshot.deployments, in_hub,
                                                                                      strict=True)))
    plan = planner.plan(desired, fingerprints, read_back)
    assert plan.changes == ()
    assert password not in json.dumps(plan_to_dict(plan, "env"))

    # Credentials that do appear in a plan (here: removed, the registry is gone) are the placeholder.
    gone = plan_case("registry-missing-in-backend")
    text = json.dumps(plan_to_dict(gone, "env"))
    placeholder = manifest.password_placeholder("local")
    assert placeholder == "<secret:registry/local/password>"
    assert [f.before for c in gone.changes for f in c.fields if f.path.endswith(".password")] == [placeholder]
    assert password not in text


def test_deployment_content_itself_is_not_in_the_plan() -> None:
    """A create shows the module images, not the manifest: no credentials block at all."""
    plan = plan_case("first-apply-empty-backend")
    text = json.dumps(plan_to_dict(plan, "env"))
    assert "registryCredentials" not in text and "<secret:" not in text
    base = next(c for c in plan.changes if c.key.name == "iris-base")
    assert isinstance(base.desired, DesiredDeployment)
    assert "registryCredentials" in json.dumps(base.desired.content)  # the content holds them; the JSON does not
