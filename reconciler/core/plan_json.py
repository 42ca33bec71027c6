"""The JSON form of a plan: the ``--format json`` output and the saved plan file.

Structure (``format_version`` 1), documented in docs/plan-format.md:

    {
      "format_version": 1,
      "environment": "local",              # Environment metadata.name
      "environment_dir": "environments/local",
      "prune": false,
      "state_fingerprint": "<sha256>",      # of the actual state the plan was made from
      "desired_fingerprint": "<sha256>",    # of the specs, file contents included
      "summary": {"add": 1, "change": 0, "replace": 1, "destroy": 0},
      "changes": [                          # in apply order
        {"resource": "deployment/iris-base", "kind": "deployment", "name": "iris-base",
         "action": "replace", "symbol": "-/+", "target": "iris-base-1a2b3c4d",
         "reason": "...", "new_version": false, "devices": 12,
         "fields": [{"path": "priority", "before": 10, "after": 20}]}
      ],
      "unchanged": ["model/iris-classifier"],
      "orphans": [], "unmanaged": ["deployment/hand-made"], "warnings": [],
      "behaviour": {...}                    # only when new image versions have samples: core.behaviour
    }

A plan with staged rollouts adds ``"rollout"`` to ``summary`` (the number of rollout steps), a
``"rollout"`` object (``step``, ``ring``, ``target_condition``, ``priority``) to each change whose
action is ``rollout``, and a ``"rollouts"`` list (where each rollout stands, its gates and the
devices per ring). Plans without rollouts are unchanged.

A change that promotes an image from another environment (``spec.promoteFrom``) has a
``"promotion"`` object: ``environment`` and ``image`` (where it comes from), ``reference`` (its
reference there) and ``digest``, the manifest digest this environment will run: the bytes tested
there. Other changes have no such key.

There are no timestamps, and every list is sorted, so the same inputs give the same bytes.
Secrets never appear: deployment content carries password placeholders only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.core.behaviour import report_to_dict
from reconciler.model.plan import Action, Change, DesiredPromotion, Plan, RolloutStatus

FORMAT_VERSION = 1


def action_name(action: Action) -> str:
    """The ``action`` field: format 1 writes a new version as ``update`` with ``new_version: true``
    (its meaning cannot change without a new format_version)."""
    return Action.UPDATE.value if action is Action.NEW_VERSION else action.value


def change_to_dict(change: Change) -> dict[str, Any]:
    return {
        "resource": str(change.key),
        "kind": change.key.kind.label,
        "name": change.key.name,
        "action": action_name(change.action),
        "symbol": change.action.symbol,
        "target": change.target,
        "reason": change.reason,
        "new_version": change.action is Action.NEW_VERSION,
        "devices": change.devices,
        "fields": [{"path": f.path, "before": f.before, "after": f.after} for f in change.fields],
        **({"rollout": {"step": change.step.kind.value, "ring": change.step.ring,
                        "target_condition": change.step.target_condition, "priority": change.step.priority,
                        "stable": change.step.stable.id if change.step.stable else None,
                        "failed_gate": change.step.failed_gate}}
           if change.step is not None else {}),
        **({"promotion": promotion_to_dict(change.desired)} if isinstance(change.desired, DesiredPromotion) else {}),
    }


def promotion_to_dict(promotion: DesiredPromotion) -> dict[str, Any]:
    source = promotion.source
    return {"environment": source.environment, "image": source.image, "reference": source.reference,
            "digest": source.digest}


def rollout_to_dict(status: RolloutStatus) -> dict[str, Any]:
    return {
        "deployment": status.deployment,
        "state": status.state,
        "ring": status.ring,
        "rings": list(status.rings),
        "candidate": status.candidate,
        "stable": status.stable,
        "message": status.message,
        "since": status.since,
        "soak_seconds": status.soak_seconds,
        "elapsed_seconds": status.elapsed_seconds,
        "remaining_seconds": status.remaining_seconds,
        "gates": [{"gate": g.gate, "figure": g.figure, "threshold": g.threshold, "passed": g.passed}
                  for g in status.gates],
        "ring_devices": status.ring_devices,
    }


def plan_to_dict(plan: Plan, environment_dir: str) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "environment": plan.environment,
        "environment_dir": environment_dir,
        "prune": plan.prune,
        "state_fingerprint": plan.state_fingerprint,
        "desired_fingerprint": plan.desired_fingerprint,
        "summary": {
            "add": plan.count(Action.CREATE),
            "change": plan.to_change,
            "replace": plan.count(Action.REPLACE),
            "destroy": plan.count(Action.DELETE),
            **({"rollout": plan.count(Action.ROLLOUT)} if plan.rollout_steps else {}),
        },
        "changes": [change_to_dict(change) for change in plan.changes],
        "unchanged": [str(key) for key in plan.unchanged],
        "orphans": [str(key) for key in plan.orphans],
        "unmanaged": list(plan.unmanaged),
        "warnings": [warning.summary for warning in plan.warnings],
        **({"rollouts": [rollout_to_dict(status) for status in plan.rollouts]} if plan.rollouts else {}),
        **({"behaviour": report_to_dict(plan.behaviour)} if plan.behaviour is not None else {}),
    }


@dataclass(frozen=True)
class SavedPlan:
    """What a saved plan file promises; the engine re-derives the changes and compares."""

    environment: str
    environment_dir: str
    prune: bool
    state_fingerprint: str
    desired_fingerprint: str
    actions: tuple[tuple[str, str, str], ...]  # (resource, action, target) in order

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SavedPlan:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported plan format_version {data.get('format_version')!r}")
        return cls(
            environment=str(data["environment"]),
            environment_dir=str(data["environment_dir"]),
            prune=bool(data["prune"]),
            state_fingerprint=str(data["state_fingerprint"]),
            desired_fingerprint=str(data["desired_fingerprint"]),
            actions=tuple((c["resource"], c["action"], c["target"]) for c in data["changes"]),
        )


def actions_of(plan: Plan) -> tuple[tuple[str, str, str], ...]:
    return tuple((str(c.key), action_name(c.action), c.target) for c in plan.changes)
