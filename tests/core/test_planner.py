"""Table tests of the pure planner: desired state + hand-made snapshots -> plan."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.core import planner
from reconciler.model.plan import Action
from reconciler.model.specs import DesiredState, Fingerprints, Kind, ResourceKey
from reconciler.model.state import LiveRegistry
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.core.snapshot_json import converged, empty_snapshot


@pytest.fixture
def desired(sample_env: Path) -> DesiredState:
    return load_environment(sample_env)


@pytest.fixture
def fingerprints(desired: DesiredState) -> Fingerprints:
    return compute_fingerprints(desired, HashCache())


def actions(plan: planner.Plan) -> list[tuple[str, str]]:
    return [(str(c.key), c.action.value) for c in plan.changes]


def test_empty_backend_creates_everything_in_dependency_order(desired, fingerprints):
    plan = planner.plan(desired, fingerprints, empty_snapshot())
    assert actions(plan) == [
        ("model/iris-classifier", "create"),
        ("image/iris-scorer", "create"),
        ("deployment/iris-base", "create"),
        ("deployment/iris-site-a-sensor", "create"),
    ]
    assert plan.summary == "Plan: 4 to add, 0 to change, 0 to replace, 0 to destroy."


def test_converged_state_plans_nothing(desired, fingerprints):
    plan = planner.plan(desired, fingerprints, converged(desired, fingerprints))
    assert plan.changes == ()
    assert len(plan.unchanged) == 4
    assert plan.summary.startswith("No changes.")


def test_model_content_change_cascades_to_new_versions_and_a_replace(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    changed = Fingerprints(models={"iris-classifier": "f" * 64},
                           images={"iris-scorer": "e" * 64})
    plan = planner.plan(desired, changed, snapshot)
    by_key = {str(c.key): c for c in plan.changes}
    model = by_key["model/iris-classifier"]
    assert model.action is Action.NEW_VERSION
    assert model.reason == "model files changed: registers version 2"
    image = by_key["image/iris-scorer"]
    assert image.action is Action.NEW_VERSION
    assert image.reason == "model iris-classifier changed: builds iris-scorer:eeeeeeeeeeee"
    base = by_key["deployment/iris-base"]
    assert base.action is Action.REPLACE
    assert base.actual is not None and base.actual.id != base.target
    assert any(f.path.endswith("settings.image") and f.after == "localhost/iris-scorer:eeeeeeeeeeee"
               for f in base.fields)
    # The layered deployment uses only an external image: untouched.
    assert "deployment/iris-site-a-sensor" not in by_key


def test_priority_change_is_an_in_place_update_with_a_reason(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    base = next(d for d in snapshot.deployments if d.name == "iris-base")
    edited = replace(base, priority=5)
    snapshot = replace(snapshot, deployments=tuple(edited if d is base else d for d in snapshot.deployments))
    plan = planner.plan(desired, fingerprints, snapshot)
    assert actions(plan) == [("deployment/iris-base", "update")]
    assert plan.changes[0].reason == "priority 5 -> 10"
    assert plan.changes[0].target == base.id


def test_spec_removed_is_an_orphan_without_prune_and_deleted_with_it(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    del desired.deployments["iris-site-a-sensor"]
    plan = planner.plan(desired, fingerprints, snapshot)
    assert plan.changes == () and plan.orphans == (ResourceKey(Kind.DEPLOYMENT, "iris-site-a-sensor"),)
    pruned = planner.plan(desired, fingerprints, snapshot, prune=True)
    assert actions(pruned) == [("deployment/iris-site-a-sensor", "delete")]


def test_deletes_come_last_in_reverse_dependency_order(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    desired.deployments.clear()
    desired.images.clear()
    desired.models.clear()
    plan = planner.plan(desired, Fingerprints({}, {}), snapshot, prune=True)
    kinds = [c.key.kind for c in plan.changes]
    assert kinds == [Kind.DEPLOYMENT, Kind.DEPLOYMENT, Kind.IMAGE, Kind.MODEL]


def test_unmanaged_and_foreign_resources_are_listed_and_never_changed(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    base = next(d for d in snapshot.deployments if d.name == "iris-base")
    hand_made = replace(base, id="hand-made", name="hand-made", owner=None, priority=99)
    other_env = replace(base, id="iris-base-other", owner="staging")
    snapshot = replace(snapshot, deployments=(*snapshot.deployments, hand_made, other_env))
    plan = planner.plan(desired, fingerprints, snapshot, prune=True)
    assert plan.changes == ()
    assert plan.unmanaged == ("deployment/hand-made", "deployment/iris-base-other (owned by environment staging)")


def test_leftover_from_an_interrupted_replace_is_deleted(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    base = next(d for d in snapshot.deployments if d.name == "iris-base")
    stale = replace(base, id="iris-base-00000000", created="2025-12-31T00:00:00")
    snapshot = replace(snapshot, deployments=(*snapshot.deployments, stale))
    plan = planner.plan(desired, fingerprints, snapshot)
    assert actions(plan) == [("deployment/iris-base", "delete")]
    assert plan.changes[0].target == "iris-base-00000000"
    assert plan.changes[0].reason.startswith("superseded by iris-base-")


def test_credential_rotation_replaces_deployments_that_embed_them(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    rotated = replace(snapshot, registries={"local": LiveRegistry("local", "localhost", "local-pull", "2")})
    plan = planner.plan(desired, fingerprints, rotated)
    assert actions(plan) == [("deployment/iris-base", "replace")]
    assert plan.changes[0].reason.endswith("registry credentials rotated")


def test_model_tag_change_updates_in_place(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    model = snapshot.models[0]
    snapshot = replace(snapshot, models=(replace(model, tags={**model.tags, "stage": "old"}),))
    plan = planner.plan(desired, fingerprints, snapshot)
    assert actions(plan) == [("model/iris-classifier", "update")]
    assert plan.changes[0].action is Action.UPDATE
    assert plan.changes[0].reason == "tags.stage removed"


def test_state_fingerprint_ignores_health_but_not_content(desired, fingerprints):
    from reconciler.model.state import DeploymentHealth

    snapshot = converged(desired, fingerprints)
    with_health = replace(snapshot, deployments=tuple(
        replace(d, health=DeploymentHealth(3, 3, 3, 0)) for d in snapshot.deployments))
    assert with_health.fingerprint() == snapshot.fingerprint()
    moved = replace(snapshot, deployments=tuple(replace(d, priority=d.priority + 1) for d in snapshot.deployments))
    assert moved.fingerprint() != snapshot.fingerprint()


def test_changed_property_value_registers_a_new_version_but_a_new_property_does_not(desired, fingerprints):
    snapshot = converged(desired, fingerprints)
    model = snapshot.models[0]
    changed = replace(snapshot, models=(replace(model, properties={"trainingScript": "old.py"}),))
    plan = planner.plan(desired, fingerprints, changed)
    assert plan.changes[0].action is Action.NEW_VERSION
    assert plan.changes[0].reason == ("properties trainingScript changed (properties cannot be edited): "
                                      "registers version 2")
    missing = replace(snapshot, models=(replace(model, properties={}),))
    plan = planner.plan(desired, fingerprints, missing)
    assert plan.changes[0].action is Action.UPDATE
    assert plan.changes[0].reason == "properties.trainingScript added ('models/iris/train.py')"
