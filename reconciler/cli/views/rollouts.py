"""How staged rollouts are shown: in plans (text, markdown) and by `reconciler rollout status`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.core.plan_json import rollout_to_dict
from reconciler.core.rollout import duration
from reconciler.model.plan import GateResult, RolloutStatus


def _figure(gate: GateResult, soaking: bool) -> str:
    figure = "not evaluated yet" if gate.figure is None else f"{gate.figure:g}"
    at_least = gate.gate.startswith("min") or gate.gate.endswith(".min")
    if gate.passed:
        mark = "ok"
    elif gate.figure is None:
        mark = "waiting"
    else:  # a minimum is judged once the ring has soaked; a maximum at once
        mark = "below, judged after the soak" if at_least and soaking else "FAILS"
    return f"{gate.gate} {figure} (needs {'>=' if at_least else '<='} {gate.threshold:g}) {mark}"


def where(status: RolloutStatus) -> str:
    """``ring canary (1 of 2), waiting``, or the state alone when no ring is in flight."""
    if status.ring is None:
        return status.state
    position = status.rings.index(status.ring) + 1 if status.ring in status.rings else "?"
    return f"ring {status.ring} ({position} of {len(status.rings)}), {status.state}"


def status_lines(status: RolloutStatus) -> list[str]:
    """One rollout: where it is and why, then its gates and the devices per ring."""
    lines = [f"deployment/{status.deployment}: {where(status)}: {status.message}"]
    if status.state == "failed":
        lines.append(f"    devices run {status.stable}" if status.stable else "    no earlier version")
    elif status.candidate and status.stable:
        lines.append(f"    candidate {status.candidate}, falls back to {status.stable}")
    elif status.candidate:
        lines.append(f"    candidate {status.candidate} (no earlier version to fall back to)")
    remaining = status.remaining_seconds
    if status.soak_seconds is not None and status.elapsed_seconds is not None:
        soak = f"soak {duration(status.soak_seconds)}" if status.soak_seconds else "no soak time"
        left = f", {duration(remaining)} left" if remaining and status.state == "waiting" else ""
        lines.append(f"    in ring for {duration(status.elapsed_seconds)} ({soak}{left})")
    lines += [f"    gate {_figure(gate, bool(remaining))}" for gate in status.gates]
    if status.ring_devices:
        reach = ", ".join(f"{ring} {count}" for ring, count in status.ring_devices.items())
        lines.append(f"    devices per ring: {reach}")
    return lines


def render_text(statuses: Sequence[RolloutStatus]) -> str:
    if not statuses:
        return "No rollouts in flight.\n"
    lines: list[str] = []
    for status in statuses:
        lines += status_lines(status)
    return "\n".join(lines) + "\n"


def render_json(statuses: Sequence[RolloutStatus]) -> str:
    return json.dumps({"rollouts": [rollout_to_dict(status) for status in statuses]}, indent=2) + "\n"


def markdown_lines(statuses: Sequence[RolloutStatus]) -> list[str]:
    if not statuses:
        return []
    lines = ["", "**Rollouts**", ""]
    for status in statuses:
        text = status_lines(status)
        lines.append(f"- {text[0]}")
        lines += [f"  - {line.strip()}" for line in text[1:]]
    return lines
