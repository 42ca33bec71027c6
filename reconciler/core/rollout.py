"""Staged rollouts: which step a deployment's rollout takes now. A pure function of the spec, the
deployments the hub holds for it (with their rollout marks and health), and the time.

A rollout uses only IoT Hub's own mechanisms:

* new content is a *candidate* deployment ``<name>-<hash>`` whose target condition is
  ``spec.targetCondition AND (ring 1 OR ... OR the current ring)`` (a ring keeps the devices of
  the rings before it) and whose priority beats the *stable* version,
  which keeps the full condition and stays the fallback;
* **advancing** widens the candidate's condition to the next ring, in place;
* **completing** gives the candidate the full condition and the spec's priority, then deletes the
  stable version;
* **rolling back** marks the failure on the stable version, then deletes the candidate: devices
  fall back to the stable version at once. The same content is not tried again (no flapping);
  new content starts again at the first ring. With no stable version to fall back to (a first
  deployment), or with ``onFailure: pause``, the candidate is held where it is instead.

The rollout's state lives in the candidate's labels (ring, since) and the stable version's
labels (the failed content hash), so any runner continues where the last one stopped.

Gates (``GateSpec``): a breach of ``maxFailedDevices`` or of a metric's ``max`` fails the ring at
once (a broken model should not keep running for the rest of the soak); ``minSuccessPercent`` and
a metric's ``min`` are judged once the ring has soaked. IoT Hub evaluates a deployment's metrics
some minutes after a change (``hub.limits.METRICS_EVALUATION_SECONDS``): figures younger than that
are "not evaluated yet" and never count as healthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from reconciler.core.diff import describe, field_changes
from reconciler.core.manifest import metric_queries
from reconciler.hub import limits
from reconciler.hub.manifest import module_images
from reconciler.model.plan import (
    Action,
    Change,
    DesiredDeployment,
    FieldChange,
    GateResult,
    RolloutStatus,
    RolloutStep,
    StepKind,
)
from reconciler.model.specs import DeploymentSpec, GateSpec, ResourceKey, RingSpec, RolloutSpec
from reconciler.model.state import DeploymentHealth, LiveDeployment


def ring_condition(target_condition: str, rollout: RolloutSpec, ring: RingSpec) -> str:
    """The candidate's condition on ``ring``: the deployment's condition AND the rings so far (a ring
    keeps the devices of the rings before it)."""
    index = rollout.rings.index(ring)
    rings = " OR ".join(f"({r.target_condition})" for r in rollout.rings[: index + 1])
    return f"({target_condition}) AND ({rings})" if index else f"({target_condition}) AND {rings}"


def candidate_priority(spec: DeploymentSpec) -> int:
    """A candidate runs one above the spec's priority, which the stable version keeps: it wins on the
    ring's devices, and `validate` refuses another deployment at that priority."""
    return spec.priority + 1


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def duration(seconds: int) -> str:
    """``5400`` -> ``1h30m``; ``45`` -> ``45s``."""
    hours, rest = divmod(max(0, int(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs and not hours else ""]
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Verdict:
    """The gates of one ring, judged: ``failed`` names the gate that failed; ``waiting`` says why the
    ring cannot move on yet; neither means the rollout moves on."""

    gates: tuple[GateResult, ...]
    failed: str | None
    waiting: str | None


def judge(gates: GateSpec, ring: RingSpec, health: DeploymentHealth | None, elapsed: int) -> Verdict:
    """Judge a candidate's ring ``elapsed`` seconds after it entered it."""
    evaluated = health is not None and elapsed >= limits.METRICS_EVALUATION_SECONDS
    results: list[GateResult] = []
    failed: str | None = None
    waiting: list[str] = []
    if elapsed < ring.soak_seconds:
        waiting.append(f"soaking, {duration(ring.soak_seconds - elapsed)} left of {ring.soak}")
    if not evaluated:
        waiting.append(f"figures not evaluated yet (changed {duration(elapsed)} ago; IoT Hub evaluates "
                       f"every {duration(limits.METRICS_EVALUATION_SECONDS)})")

    def gate(name: str, figure: float | int | None, threshold: float | int, passed: bool, *,
             at_once: bool) -> None:
        nonlocal failed
        results.append(GateResult(name, figure, threshold, passed))
        soaked = elapsed >= ring.soak_seconds
        if not passed and figure is not None and failed is None and (at_once or (soaked and evaluated)):
            failed = name

    if gates.max_failed_devices is not None:
        figure = health.failed if health is not None else None
        gate("maxFailedDevices", figure, gates.max_failed_devices,
             figure is not None and figure <= gates.max_failed_devices, at_once=True)
    if gates.min_success_percent is not None:
        percent = None
        if health is not None and evaluated and health.targeted:
            percent = round(100.0 * health.succeeded / health.targeted, 1)
        elif evaluated and health is not None and not health.targeted:
            waiting.append(f"ring {ring.name} reaches no devices yet")
        gate("minSuccessPercent", percent, gates.min_success_percent,
             percent is not None and percent >= gates.min_success_percent, at_once=False)
    for metric, bounds in sorted(gates.metrics.items()):
        value = health.metrics.get(metric) if health is not None else None
        if value is None and evaluated:
            waiting.append(f"metric {metric} has no result yet")
        if bounds.max is not None:
            gate(f"metrics.{metric}.max", value, bounds.max, value is not None and value <= bounds.max, at_once=True)
        if bounds.min is not None:
            gate(f"metrics.{metric}.min", value if evaluated else None, bounds.min,
                 evaluated and value is not None and value >= bounds.min, at_once=False)
    if failed is None and not waiting and not all(result.passed for result in results):
        waiting.append("gates not met yet")
    return Verdict(tuple(results), failed, "; ".join(waiting) or None)


def _figures(health: DeploymentHealth | None, ring: str) -> str:
    if health is None:
        return f"{ring}: no figures"
    return f"{ring}: {health.succeeded}/{health.targeted} succeeded, {health.failed} failed"


def _breach(verdict: Verdict) -> str:
    """``maxFailedDevices 1 > 0``: the failed gate's figure against its threshold."""
    gate = next(g for g in verdict.gates if g.gate == verdict.failed)
    relation = "<" if gate.gate.startswith("min") or gate.gate.endswith(".min") else ">"
    return f"{gate.gate} {gate.figure:g} {relation} {gate.threshold:g}"


@dataclass(frozen=True)
class RolloutDecision:
    """What the planner does for one deployment with a rollout: ``changes`` (rollout steps, and
    deletes of stray candidates) and its ``status``."""

    changes: tuple[Change, ...]
    status: RolloutStatus


def _mutable(condition: str, priority: int, labels: dict[str, str], metrics: dict[str, str]) -> dict[str, object]:
    return {"targetCondition": condition, "priority": priority, "labels": labels, "metrics": metrics}


def decide(deployment: DesiredDeployment, rollout: RolloutSpec, existing: list[LiveDeployment],
           now: datetime) -> RolloutDecision | None:
    """The rollout step of one deployment, or None when there is no rollout to run (the content is
    the stable version's: plain updates apply, and stray candidates are cleaned up as leftovers).

    Besides the step, the stable version and the candidate keep the spec's mutable fields: a change
    of the target condition, priority, labels or metrics is a ``REFRESH`` of each, at once, with the
    rollout marks kept (the stable version: the full condition and the spec's priority; the
    candidate: its ring's condition and the priority above)."""
    spec = deployment.spec
    key = spec.key
    rings = tuple(ring.name for ring in rollout.rings)
    stables = sorted((d for d in existing if not d.is_candidate), key=lambda d: (d.created, d.id))
    stable = stables[-1] if stables else None
    if stable is not None and stable.content_hash == deployment.content_hash:
        return None
    candidates = sorted((d for d in existing if d.is_candidate), key=lambda d: (d.created, d.id))
    current = next((d for d in candidates if d.content_hash == deployment.content_hash), None)
    stale = [d for d in candidates if d is not current]
    priority = candidate_priority(spec)

    def status(state: str, message: str, verdict: Verdict | None = None, elapsed: int | None = None,
               ring: RingSpec | None = None) -> RolloutStatus:
        return RolloutStatus(deployment=spec.name, candidate=current.id if current else deployment.id,
                             stable=stable.id if stable else None,
                             ring=current.rollout.ring if current else None, rings=rings, state=state,
                             message=message, since=current.rollout.since if current else None,
                             soak_seconds=ring.soak_seconds if ring else None, elapsed_seconds=elapsed,
                             gates=verdict.gates if verdict else ())

    def expected(live: LiveDeployment, condition: str, priority: int) -> dict[str, object]:
        return _mutable(condition, priority, spec.labels, metric_queries(spec.metrics, live.id))

    def step(kind: StepKind, reason: str, *, ring: RingSpec | None, condition: str, priority: int,
             candidate: LiveDeployment | None, failed_gate: str | None = None) -> Change:
        rollout_step = RolloutStep(kind, ring.name if ring else None, condition, priority, candidate, stable,
                                   failed_gate)
        fields: tuple[FieldChange, ...] = ()
        if kind is StepKind.START:  # what the new content changes, against what devices run now
            after = _mutable(condition, priority, spec.labels, deployment.metrics)
            fields = (field_changes(stable.content, deployment.content, prefix="content.") if stable is not None
                      else field_changes({}, {**after, "modules": module_images(deployment.content)}))
        elif kind in (StepKind.ADVANCE, StepKind.COMPLETE) and candidate is not None:
            fields = field_changes(_mutable(candidate.target_condition, candidate.priority, candidate.labels,
                                            candidate.metrics), expected(candidate, condition, priority))
        return Change(key, Action.ROLLOUT, reason, fields, desired=deployment, actual=candidate or stable,
                      step=rollout_step)

    def refresh(live: LiveDeployment | None, condition: str, priority: int, role: str) -> tuple[Change, ...]:
        """The mutable fields of ``live`` brought to the spec's, in place (rollout marks kept)."""
        if live is None:
            return ()
        before = _mutable(live.target_condition, live.priority, live.labels, live.metrics)
        fields = field_changes(before, expected(live, condition, priority))
        if not fields:
            return ()
        rollout_step = RolloutStep(StepKind.REFRESH, live.rollout.ring, condition, priority, current, stable,
                                   refreshed=live)
        return (Change(key, Action.ROLLOUT, f"the {role}'s {describe(fields)}", fields, desired=deployment,
                       actual=live, step=rollout_step),)

    stable_refresh = refresh(stable, deployment.target_condition, spec.priority, "stable version")
    first = rollout.rings[0]
    if current is None:
        if stable is not None and stable.rollout.failed == deployment.content_hash:
            mark = stable.rollout
            message = (f"content {deployment.content_hash} failed in ring {mark.failed_ring} "
                       f"({mark.failed_gate}) and was rolled back; it is not tried again: change the specs")
            return RolloutDecision(stable_refresh, status("failed", message))
        superseded = f", superseding candidate {stale[-1].id}" if stale else ""
        what = f"new content, ring {first.name} first{superseded}"
        if stable is None and not stale:
            what = f"first deployment, ring {first.name} first"
        change = step(StepKind.START, f"start rollout of {deployment.id}: {what}", ring=first,
                      condition=ring_condition(deployment.target_condition, rollout, first), priority=priority,
                      candidate=stale[-1] if stale else None)
        deletes = tuple(_stray(key, d, deployment) for d in stale[:-1])
        return RolloutDecision((*stable_refresh, change, *deletes), status("starting", change.reason))

    deletes = tuple(_stray(key, d, deployment) for d in stale)
    mark = current.rollout
    if stable is not None and stable.rollout.failed == deployment.content_hash:  # an interrupted rollback
        change = step(StepKind.ROLLBACK, f"roll back {current.id}: finish the rollback recorded on {stable.id} "
                                         f"(ring {stable.rollout.failed_ring}, gate {stable.rollout.failed_gate})",
                      ring=None, condition=current.target_condition, priority=current.priority,
                      candidate=current, failed_gate=stable.rollout.failed_gate)
        return RolloutDecision((*stable_refresh, change, *deletes), status("failing", change.reason))
    index = next((i for i, ring in enumerate(rollout.rings) if ring.name == mark.ring), None)
    if index is None:
        change = step(StepKind.ADVANCE, f"ring {mark.ring} is no longer in the spec: back to ring {first.name}",
                      ring=first, condition=ring_condition(deployment.target_condition, rollout, first),
                      priority=priority, candidate=current)
        return RolloutDecision((*stable_refresh, change, *deletes), status("ready", change.reason))
    ring = rollout.rings[index]
    held = refresh(current, ring_condition(deployment.target_condition, rollout, ring), priority, "candidate")
    if mark.paused:
        message = f"paused in ring {ring.name}: gate {mark.paused} failed; change the specs to roll out new content"
        return RolloutDecision((*stable_refresh, *held, *deletes), status("paused", message))
    since = parse_time(mark.since)
    elapsed = int((now - since).total_seconds()) if since else 0
    verdict = judge(rollout.gates, ring, current.health, elapsed)
    figures = _figures(current.health, ring.name)
    if verdict.failed is not None:
        if rollout.on_failure == "rollback" and stable is not None:
            change = step(StepKind.ROLLBACK, f"roll back {current.id}: ring {ring.name} failed gate {_breach(verdict)} "
                                             f"({figures}); devices fall back to {stable.id}",
                          ring=None, condition=current.target_condition, priority=current.priority,
                          candidate=current, failed_gate=verdict.failed)
        else:
            why = "onFailure: pause" if rollout.on_failure == "pause" else "no stable version to fall back to"
            change = step(StepKind.PAUSE, f"pause {current.id} in ring {ring.name}: gate {_breach(verdict)} "
                                          f"({figures}; {why})",
                          ring=ring, condition=current.target_condition, priority=current.priority,
                          candidate=current, failed_gate=verdict.failed)
        return RolloutDecision((*stable_refresh, change, *deletes),
                               status("failing", change.reason, verdict, elapsed, ring))
    if verdict.waiting is not None:
        waiting = status("waiting", verdict.waiting, verdict, elapsed, ring)
        return RolloutDecision((*stable_refresh, *held, *deletes), waiting)
    soaked = f"{figures}, soaked {duration(elapsed)} >= {ring.soak}"
    if index + 1 < len(rollout.rings):
        following = rollout.rings[index + 1]
        change = step(StepKind.ADVANCE, f"ring {ring.name} -> {following.name} ({soaked})", ring=following,
                      condition=ring_condition(deployment.target_condition, rollout, following),
                      priority=priority, candidate=current)
    else:
        replaced = f", then delete {stable.id}" if stable is not None else ""
        change = step(StepKind.COMPLETE, f"ring {ring.name} -> all devices ({soaked}){replaced}", ring=None,
                      condition=deployment.target_condition, priority=spec.priority, candidate=current)
        stable_refresh = ()  # deleted by the step
    return RolloutDecision((*stable_refresh, change, *deletes),
                           status("ready", change.reason, verdict, elapsed, ring))


def _stray(key: ResourceKey, candidate: LiveDeployment, deployment: DesiredDeployment) -> Change:
    """A candidate of older content left beside the current one (an interrupted start)."""
    return Change(key, Action.DELETE, f"superseded by candidate {deployment.id} (left over from an earlier apply)",
                  actual=candidate)
