"""reconciler.core.drift: a plan and a snapshot (read with health) -> drift items and rollouts.

Inputs are built by hand: a plan with one change of each kind, and deployments whose health
names the deployments that shadow them.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.drift import DriftItem, RolloutStatus, detect
from reconciler.model.plan import Action, Change, FieldChange, Plan
from reconciler.model.specs import Kind, ResourceKey
from reconciler.model.state import DeploymentHealth, LiveDeployment, ModelVersion, Snapshot

ENV = "local"


def deployment(deployment_id: str, name: str | None = None, *, owner: str | None = ENV, priority: int = 10,
               health: DeploymentHealth | None = None) -> LiveDeployment:
    return LiveDeployment(id=deployment_id, name=name or deployment_id, owner=owner, content_hash=None, content={},
                          target_condition="tags.environment='dev'", priority=priority, labels={}, metrics={},
                          layered=False, created="2026-01-01T00:00:00", health=health)


def snapshot(*deployments: LiveDeployment) -> Snapshot:
    return Snapshot(environment=ENV, image_registry="localhost", models=(), images=(), deployments=deployments,
                    registries={})


def plan(*changes: Change, orphans: tuple[str, ...] = ()) -> Plan:
    return Plan(environment=ENV, changes=changes, unchanged=(), orphans=orphans, unmanaged=(),
                state=snapshot(), desired_fingerprint="d" * 64)


def key(kind: Kind, name: str) -> ResourceKey:
    return ResourceKey(kind, name)


MODEL_V3 = ModelVersion("iris", 3, "f" * 64, "", {}, {}, ENV)


def test_no_changes_and_no_deployments_is_no_drift() -> None:
    report = detect(plan(), snapshot())
    assert report.environment == ENV
    assert report.items == () and report.rollouts == ()
    assert not report.has_drift and report.failing == ()


def test_a_create_means_the_resource_is_missing() -> None:
    report = detect(plan(Change(key(Kind.DEPLOYMENT, "iris-base"), Action.CREATE, "new deployment")), snapshot())
    assert report.items == (DriftItem("deployment/iris-base", "missing", "in the specs but not in the backend "
                                      "(deleted outside git, or never applied)"),)
    assert report.has_drift


def test_an_in_place_update_is_an_edit_outside_git_with_each_field() -> None:
    change = Change(key(Kind.DEPLOYMENT, "iris-base"), Action.UPDATE, "priority 5 -> 10",
                    (FieldChange("labels.team", None, "vision"), FieldChange("priority", 5, 10)))
    [item] = detect(plan(change), snapshot()).items
    assert (item.resource, item.category) == ("deployment/iris-base", "changed")
    assert item.message == ("edited outside git: labels.team is None, the specs say 'vision'; "
                            "priority is 5, the specs say 10")


def test_a_new_version_update_says_the_newest_version_differs() -> None:
    change = Change(key(Kind.MODEL, "iris"), Action.NEW_VERSION, "model files changed: registers version 4",
                    (FieldChange("fingerprint", "f" * 64, "e" * 64),), actual=MODEL_V3)
    [item] = detect(plan(change), snapshot()).items
    assert item == DriftItem("model/iris", "changed",
                             "the newest version does not match the specs: model files changed: registers version 4")


def test_a_replace_means_the_live_content_differs() -> None:
    change = Change(key(Kind.DEPLOYMENT, "iris-base"), Action.REPLACE, "content is immutable: registry credentials "
                    "rotated", actual=deployment("iris-base-1"))
    [item] = detect(plan(change), snapshot()).items
    assert item == DriftItem("deployment/iris-base", "replaced",
                             "live content differs from the specs: content is immutable: registry credentials rotated")


def test_deletes_and_kept_orphans_are_orphaned() -> None:
    leftover = Change(key(Kind.DEPLOYMENT, "iris-base"), Action.DELETE, "superseded by iris-base-2",
                      actual=deployment("iris-base-1", "iris-base"))
    report = detect(plan(leftover, orphans=("image/old-scorer",)), snapshot())
    assert report.items == (
        DriftItem("deployment/iris-base", "orphaned", "iris-base-1: superseded by iris-base-2"),
        DriftItem("image/old-scorer", "orphaned", "owned but no longer in the specs (apply with --prune removes it)"),
    )


def test_items_are_sorted_by_resource_then_category() -> None:
    changes = (
        Change(key(Kind.MODEL, "b-model"), Action.CREATE, "new"),
        Change(key(Kind.DEPLOYMENT, "a-deployment"), Action.CREATE, "new"),
    )
    report = detect(plan(*changes, orphans=("deployment/a-deployment",)), snapshot())
    assert [(i.resource, i.category) for i in report.items] == [
        ("deployment/a-deployment", "missing"), ("deployment/a-deployment", "orphaned"), ("model/b-model", "missing")]


def test_a_deployment_shadowed_by_an_unmanaged_one_is_drift() -> None:
    ours = deployment("iris-base-1", "iris-base", priority=10,
                      health=DeploymentHealth(targeted=5, applied=3, succeeded=3, failed=0,
                                              shadowed_by=("hand-made",)))
    theirs = deployment("hand-made", owner=None, priority=99)
    report = detect(plan(), snapshot(ours, theirs))
    assert report.items == (DriftItem(
        "deployment/iris-base", "shadowed",
        "iris-base-1 (priority 10) loses to unmanaged deployment hand-made (priority 99) on some of its 5 targeted "
        "devices"),)
    assert report.has_drift


def test_shadowing_by_another_environment_counts_and_by_our_own_does_not() -> None:
    health = DeploymentHealth(4, 4, 4, 0, shadowed_by=("ours-high", "staging-high", "gone"))
    shadowed = deployment("ours-low", priority=1, health=health)
    ours_high = deployment("ours-high", priority=50)
    staging_high = deployment("staging-high", owner="staging", priority=60)
    report = detect(plan(), snapshot(shadowed, ours_high, staging_high))
    # An owned winner is the specs' own choice; an id no longer in the hub is ignored.
    assert [(i.resource, i.category) for i in report.items] == [("deployment/ours-low", "shadowed")]
    assert "staging-high (priority 60)" in report.items[0].message


def test_rollouts_list_owned_deployments_only_sorted_and_not_evaluated_when_unknown() -> None:
    failing = DeploymentHealth(targeted=3, applied=3, succeeded=1, failed=2)
    report = detect(plan(), snapshot(
        deployment("zeta-1", "zeta", priority=5, health=failing),
        deployment("alpha-2", "alpha"),
        deployment("alpha-1", "alpha"),
        deployment("foreign", owner=None, health=DeploymentHealth(9, 9, 0, 9)),
        deployment("staging", owner="staging", health=DeploymentHealth(9, 9, 0, 9)),
    ))
    # No figures is "not evaluated yet" (None), never zeros that read as "0 failed".
    assert report.rollouts == (
        RolloutStatus("alpha", "alpha-1", 10, None),
        RolloutStatus("alpha", "alpha-2", 10, None),
        RolloutStatus("zeta", "zeta-1", 5, failing),
    )
    assert report.failing == (RolloutStatus("zeta", "zeta-1", 5, failing),)
    # Failing rollouts are reported, but they are not drift: the state matches the specs.
    assert not report.has_drift


def test_health_does_not_take_part_in_equality_but_is_reported() -> None:
    plain = deployment("iris-base-1")
    healthy = replace(plain, health=DeploymentHealth(2, 2, 2, 0))
    assert plain == healthy
    [rollout] = detect(plan(), snapshot(healthy)).rollouts
    assert rollout.health == DeploymentHealth(2, 2, 2, 0)
