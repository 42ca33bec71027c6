"""Drift: how the actual state differs from the specs, and how rollouts are doing.

Drift is computed like Argo CD's "OutOfSync": the specs at the checked-out commit (main,
for the nightly job) against the live state. Since main is applied on merge, anything a
plan would change is drift: a field edited by hand, a resource deleted out of band, an
owned resource no longer in the specs. On top of the plan it adds what a plan cannot show:
deployments shadowed by a higher-priority deployment we do not own, and rollout health.
A staged rollout's own progress (a ring that is due to advance, complete, roll back or
pause) is not drift: it is listed with the staged rollouts, and rollout.yml takes the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model.plan import Action, Change, Plan, StepKind
from reconciler.model.plan import RolloutStatus as StagedRollout
from reconciler.model.state import DeploymentHealth, Snapshot


@dataclass(frozen=True)
class DriftItem:
    """One difference. ``category`` is one of: missing, changed, replaced, orphaned, shadowed."""

    resource: str
    category: str
    message: str


@dataclass(frozen=True)
class RolloutStatus:
    """A managed deployment's rollout, from the hub's system metrics."""

    name: str
    id: str
    priority: int
    health: DeploymentHealth | None  # None: the hub has not evaluated the deployment yet


# Rollout steps that are a staged rollout's own progress (rollout.yml takes them): not drift.
PROGRESS = frozenset({StepKind.ADVANCE, StepKind.COMPLETE, StepKind.ROLLBACK, StepKind.PAUSE})


@dataclass(frozen=True)
class DriftReport:
    environment: str
    items: tuple[DriftItem, ...]
    rollouts: tuple[RolloutStatus, ...]
    staged: tuple[StagedRollout, ...] = ()  # staged rollouts in flight or failed, as the plan judged them

    @property
    def has_drift(self) -> bool:
        return bool(self.items)

    @property
    def failing(self) -> tuple[RolloutStatus, ...]:
        return tuple(r for r in self.rollouts if r.health is not None and r.health.failed)


def _change_item(change: Change) -> DriftItem:
    resource = str(change.key)
    if change.action is Action.CREATE:
        return DriftItem(resource, "missing", "in the specs but not in the backend (deleted outside git, "
                                              "or never applied)")
    if change.action is Action.REPLACE:
        return DriftItem(resource, "replaced", f"live content differs from the specs: {change.reason}")
    if change.action is Action.DELETE:
        return DriftItem(resource, "orphaned", f"{change.target}: {change.reason}")
    if change.action is Action.NEW_VERSION:
        return DriftItem(resource, "changed", f"the newest version does not match the specs: {change.reason}")
    if change.step is not None and change.step.kind is StepKind.START:
        return DriftItem(resource, "replaced", f"live content differs from the specs: {change.reason}")
    details = "; ".join(f"{f.path} is {f.before!r}, the specs say {f.after!r}" for f in change.fields)
    return DriftItem(resource, "changed", f"edited outside git: {details}")


def detect(plan: Plan, snapshot: Snapshot) -> DriftReport:
    """Drift items from a plan made against ``snapshot`` (read with health)."""
    items = [_change_item(change) for change in plan.changes
             if change.step is None or change.step.kind not in PROGRESS]
    items += [DriftItem(resource, "orphaned", "owned but no longer in the specs (apply with --prune removes it)")
              for resource in map(str, plan.orphans)]
    by_id = {d.id: d for d in snapshot.deployments}
    rollouts = []
    for deployment in snapshot.deployments:
        if deployment.owner != plan.environment:
            continue
        health = deployment.health
        rollouts.append(RolloutStatus(deployment.name, deployment.id, deployment.priority, health))
        if health is None:
            continue
        foreign = [by_id[i] for i in health.shadowed_by if i in by_id and by_id[i].owner != plan.environment]
        for winner in foreign:
            items.append(DriftItem(
                f"deployment/{deployment.name}", "shadowed",
                f"{deployment.id} (priority {deployment.priority}) loses to unmanaged deployment {winner.id} "
                f"(priority {winner.priority}) on some of its {health.targeted} targeted devices",
            ))
    return DriftReport(
        environment=plan.environment,
        items=tuple(sorted(items, key=lambda i: (i.resource, i.category, i.message))),
        rollouts=tuple(sorted(rollouts, key=lambda r: (r.name, r.id))),
        staged=plan.rollouts,
    )
