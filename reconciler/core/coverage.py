"""Which devices a plan would leave with no base deployment: a pure question, counted by the engine.

A device keeps running the modules of its last deployment when no deployment targets it any more
(IoT Hub does not remove them), but nothing manages them after that. A plan that deletes a base
deployment, or moves one, should say how many devices that leaves without one.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.model.plan import Action, Change, DesiredDeployment, Plan, StepKind
from reconciler.model.state import LiveDeployment, Snapshot


def _removed(change: Change) -> LiveDeployment | None:
    """The base deployment a change takes away, if any."""
    if change.action in (Action.DELETE, Action.REPLACE) and isinstance(change.actual, LiveDeployment):
        return None if change.actual.layered else change.actual
    if change.step is not None and change.step.kind is StepKind.COMPLETE and change.step.stable is not None:
        return None if change.step.stable.layered else change.step.stable
    return None


def _after(change: Change) -> tuple[str, str] | None:
    """(id, target condition) of the base deployment a change leaves in the hub, if any."""
    desired = change.desired
    if not isinstance(desired, DesiredDeployment) or desired.spec.layered or change.action is Action.DELETE:
        return None
    if change.step is not None:
        if change.step.kind is StepKind.ROLLBACK:
            return None
        return desired.id, change.step.target_condition
    return desired.id, desired.target_condition


def uncovered(plan: Plan, snapshot: Snapshot) -> list[tuple[Change, LiveDeployment, str]]:
    """For each change that takes a base deployment away: the change, that deployment, and the
    condition selecting the devices it reaches now and no base deployment reaches once the plan is
    applied."""
    removed = [(change, old) for change in plan.changes if (old := _removed(change)) is not None]
    if not removed:
        return []
    gone = {old.id for _, old in removed}
    gone |= {c.actual.id for c in plan.changes
             if c.step is not None and c.step.kind is StepKind.ROLLBACK and isinstance(c.actual, LiveDeployment)}
    conditions = {d.id: d.target_condition for d in snapshot.deployments if not d.layered and d.id not in gone}
    conditions.update(after for change in plan.changes if (after := _after(change)) is not None)
    return [(change, old, _query(old.target_condition, conditions.values())) for change, old in removed]


def _query(old: str, remaining: Iterable[str]) -> str:
    others = " OR ".join(f"({condition})" for condition in sorted(set(remaining)))
    return f"({old}) AND NOT ({others})" if others else old
