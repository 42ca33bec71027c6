"""Staged rollouts end to end through the CLI, on every backend (issue 9).

The sample's base deployment gets two rings (site b first, then cam-a1, then every device); time is
pinned with ``RECONCILER_NOW``, so soak times pass without waiting. Who runs what is read from the
hub (the local simulator, or the emulated IoT Hub's own assignment), never from our own state.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from tests.e2e.backends import Backend, snapshot
from tests.e2e.helpers import Workspace, actions

DEPLOYMENTS = "deployments.yaml"
ROLLOUT = """  priority: 10
  rollout:
    rings:
      - name: canary
        targetCondition: "tags.site='b'"
        soak: 30m
      - name: first-a
        targetCondition: "deviceId='cam-a1'"
        soak: 1h
    gates:
      minSuccessPercent: 100
      maxFailedDevices: 0
    onFailure: rollback
"""
FLEET = ("cam-a1", "cam-a2", "cam-b1")


def at(monkeypatch: pytest.MonkeyPatch, time: str, backend: Backend | None = None) -> None:
    """Pin the time the reconciler judges rollouts at, and the backend's own clock with it (the emulated IoT Hub
    evaluates deployments' metrics every 5 minutes of its clock): one time, as in reality."""
    moment = f"2026-11-28T{time}:00Z"
    monkeypatch.setenv("RECONCILER_NOW", moment)
    if backend is not None:
        backend.pin_time(datetime.fromisoformat(moment.replace("Z", "+00:00")))


def with_rollout(ws: Workspace) -> None:
    """The rings go under iris-base's ``priority: 10`` (the first deployment of both samples)."""
    path = ws.env_dir / DEPLOYMENTS
    text, count = re.subn(r"(?m)^  priority: 10\b.*\n", ROLLOUT, path.read_text(), count=1)
    assert count == 1
    path.write_text(text)


def new_content(ws: Workspace, value: str = "iris-classifier-v2", old: str = "iris-classifier") -> None:
    """Change the deployment's content (the scorer's MODEL_NAME) from ``old`` to ``value``."""
    ws.edit(f"{ws.env}/{DEPLOYMENTS}", f"MODEL_NAME: {old}\n", f"MODEL_NAME: {value}\n")


def base_ids(ws: Workspace) -> dict[str, str]:
    """Owned iris-base deployments: id -> "candidate" or "stable"."""
    state = snapshot(ws.env_dir)
    return {d.id: "candidate" if d.is_candidate else "stable" for d in state.deployments
            if d.owner == state.environment and d.name == "iris-base"}


def runs(backend: Backend, ws: Workspace) -> dict[str, str]:
    running = backend.running(ws.env_dir)
    return {device: running[device] for device in FLEET}


def started(backend: Backend, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Apply the sample, then new content with rings at 10:00: returns (stable id, candidate id)."""
    at(monkeypatch, "09:00", backend)
    ws.apply()
    with_rollout(ws)
    new_content(ws)
    at(monkeypatch, "10:00", backend)
    plan = ws.plan_json()
    assert actions(plan) == [("deployment/iris-base", "rollout")]
    step = plan["changes"][0]  # type: ignore[index]
    assert step["rollout"]["step"] == "start" and step["rollout"]["ring"] == "canary"
    assert step["devices"] == 1
    assert step["rollout"]["priority"] == 11
    ws.apply()
    ids = base_ids(ws)
    stable = next(i for i, role in ids.items() if role == "stable")
    candidate = next(i for i, role in ids.items() if role == "candidate")
    return stable, candidate


def test_a_good_rollout_goes_ring_by_ring_to_completion(ws: Workspace, backend: Backend,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stable, candidate = started(backend, ws, monkeypatch)
    assert runs(backend, ws) == {"cam-a1": stable, "cam-a2": stable, "cam-b1": candidate}

    # The hub has not evaluated the candidate yet (it does every 5 minutes): its gates wait, never pass.
    at(monkeypatch, "10:02", backend)
    early = ws.run("rollout", ws.env, "status", "--format", "json")
    status = json.loads(early.out)["rollouts"][0]
    assert status["state"] == "waiting"
    assert "figures not evaluated yet (changed 2m ago; IoT Hub evaluates every 5m)" in status["message"]
    assert not any(g["passed"] for g in status["gates"] if g["gate"] == "minSuccessPercent")
    if backend.name == "azure":  # the emulated hub lists no figures before its first evaluation
        assert {g["figure"] for g in status["gates"]} == {None}

    # Not soaked yet: the plan says so, and exits 0 (nothing to do).
    at(monkeypatch, "10:20", backend)
    waiting = ws.run("plan", ws.env, "--detailed-exitcode")
    assert waiting.code == 0, waiting.out + waiting.err
    assert "ring canary (1 of 2), waiting: soaking, 10m left of 30m" in waiting.out
    status = json.loads(ws.run("rollout", ws.env, "status", "--format", "json").out)["rollouts"][0]
    assert (status["ring"], status["state"], status["remaining_seconds"]) == ("canary", "waiting", 600)
    assert status["ring_devices"] == {"canary": 1, "first-a": 2, "all": 3}
    assert {g["gate"]: (g["figure"], g["passed"]) for g in status["gates"]} == {
        "maxFailedDevices": (0, True), "minSuccessPercent": (100.0, True)}

    at(monkeypatch, "10:31", backend)
    # A step that is due is the rollout job's business, not drift; drift lists the rollout.
    drift = ws.run("drift", ws.env, "--format", "json")
    assert drift.code == 0, drift.out + drift.err
    report = json.loads(drift.out)
    assert report["drift"] is False and report["staged_rollouts"][0]["state"] == "ready"
    advanced = ws.apply("--rollouts-only")
    assert "ring canary -> first-a (canary: 1/1 succeeded, 0 failed, soaked 31m >= 30m)" in advanced.out
    assert runs(backend, ws) == {"cam-a1": candidate, "cam-a2": stable, "cam-b1": candidate}

    at(monkeypatch, "11:00", backend)
    assert "Rollout steps taken: 0." in ws.apply("--rollouts-only").out

    at(monkeypatch, "11:32", backend)
    completed = ws.apply("--rollouts-only")
    assert f"ring first-a -> all devices (first-a: 2/2 succeeded, 0 failed, soaked 1h1m >= 1h), then delete " \
           f"{stable}" in completed.out
    assert runs(backend, ws) == dict.fromkeys(FLEET, candidate)
    assert base_ids(ws) == {candidate: "stable"}
    final = ws.run("plan", ws.env, "--detailed-exitcode")
    assert final.code == 0 and "No changes." in final.out and "Rollouts:" not in final.out


def test_a_failing_canary_is_rolled_back_and_not_tried_again(ws: Workspace, backend: Backend,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    stable, candidate = started(backend, ws, monkeypatch)
    backend.set_failing(ws.env_dir, "cam-b1")

    at(monkeypatch, "10:06", backend)
    rolled_back = ws.apply("--rollouts-only")
    assert (f"roll back {candidate}: ring canary failed gate maxFailedDevices 1 > 0 (canary: 0/1 succeeded, "
            f"1 failed); devices fall back to {stable}") in rolled_back.out
    assert runs(backend, ws) == dict.fromkeys(FLEET, stable)
    assert base_ids(ws) == {stable: "stable"}
    mark = next(d for d in snapshot(ws.env_dir).deployments if d.id == stable).rollout
    assert (mark.failed, mark.failed_ring, mark.failed_gate) == (candidate.rsplit("-", 1)[1], "canary",
                                                                  "maxFailedDevices")

    # The failure is recorded in the hub: the next plan shows it, changes nothing, exits 0.
    backend.set_failing(ws.env_dir, "cam-b1", False)
    at(monkeypatch, "12:00", backend)
    again = ws.run("plan", ws.env, "--detailed-exitcode")
    assert again.code == 0, again.out + again.err
    assert "No changes." in again.out
    assert "failed: content" in again.out and "not tried again" in again.out
    # New content starts again at the first ring.
    new_content(ws, "iris-classifier-v3", old="iris-classifier-v2")
    plan = ws.plan_json()
    assert actions(plan) == [("deployment/iris-base", "rollout")]
    assert plan["changes"][0]["rollout"]["ring"] == "canary"  # type: ignore[index]


def test_rollouts_only_changes_nothing_else(ws: Workspace, backend: Backend,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stable, candidate = started(backend, ws, monkeypatch)
    ws.edit(f"{ws.env}/models.yaml", "task: classification", "task: iris-classification")
    before = snapshot(ws.env_dir)

    at(monkeypatch, "10:10", backend)  # nothing due: the model change is not applied
    assert "Rollout steps taken: 0." in ws.apply("--rollouts-only").out
    assert snapshot(ws.env_dir) == before

    at(monkeypatch, "10:40", backend)  # the advance is due: it alone is taken
    ws.apply("--rollouts-only")
    after = snapshot(ws.env_dir)
    assert after.models == before.models and after.images == before.images
    changed = {d.id for d in after.deployments} ^ {d.id for d in before.deployments}
    assert not changed
    moved = [d.id for d in after.deployments if d not in before.deployments]
    assert moved == [candidate]
    assert [c["resource"] for c in ws.plan_json()["changes"]] == ["model/iris-classifier"]  # type: ignore[index]


def test_a_second_change_replaces_the_candidate_and_keeps_the_stable_version(
        ws: Workspace, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    stable, first = started(backend, ws, monkeypatch)
    new_content(ws, "iris-classifier-v3", old="iris-classifier-v2")
    at(monkeypatch, "10:15", backend)
    plan = ws.plan_json()
    assert actions(plan) == [("deployment/iris-base", "rollout")]
    assert f"superseding candidate {first}" in plan["changes"][0]["reason"]  # type: ignore[index]
    ws.apply()
    ids = base_ids(ws)
    assert ids[stable] == "stable" and first not in ids and len(ids) == 2
    second = next(i for i, role in ids.items() if role == "candidate")
    assert runs(backend, ws) == {"cam-a1": stable, "cam-a2": stable, "cam-b1": second}

    # Back to the stable content: the candidate goes, nothing is re-created.
    new_content(ws, "iris-classifier", old="iris-classifier-v3")
    plan = ws.plan_json()
    assert [(c["action"], c["target"], c["reason"]) for c in plan["changes"]] == [  # type: ignore[union-attr]
        ("delete", second, f"rollout cancelled: the specs are back to {stable}")]
    ws.apply()
    assert base_ids(ws) == {stable: "stable"}
    assert runs(backend, ws) == dict.fromkeys(FLEET, stable)


def test_validation_of_rollouts(ws: Workspace) -> None:
    with_rollout(ws)
    path = f"{ws.env}/{DEPLOYMENTS}"
    ws.edit(path, "soak: 30m", "soak: 30 minutes")
    result = ws.run("validate", ws.env)
    assert result.code == 1 and "Traceback" not in result.err
    line = next(n for n, text in enumerate((ws.env_dir / DEPLOYMENTS).read_text().splitlines(), 1)
                if "30 minutes" in text)
    assert (f"deployments.yaml:{line}:15: Deployment/iris-base: spec.rollout.rings[0].soak: '30 minutes' is not "
            "allowed") in result.err, result.err

    ws.edit(path, "soak: 30 minutes", "soak: 30m")
    ws.edit(path, "targetCondition: \"deviceId='cam-a1'\"", "targetCondition: \"tags.x IN ['a']\"")
    ws.edit(path, "      maxFailedDevices: 0\n",
            "      maxFailedDevices: 0\n      metrics:\n        scorerErrors: {max: 0}\n")
    result = ws.run("validate", ws.env)
    assert result.code == 1 and "Traceback" not in result.err
    assert "spec.rollout.rings[1].targetCondition: IN is not supported" in result.err, result.err
    assert "spec.rollout.gates.metrics.scorerErrors: no metric named 'scorerErrors' in spec.metrics" in result.err


def test_a_plan_warns_when_it_leaves_devices_with_no_base_deployment(ws: Workspace, backend: Backend,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    at(monkeypatch, "09:00", backend)
    ws.apply()
    base_id = next(iter(base_ids(ws)))
    path = ws.env_dir / DEPLOYMENTS
    text = path.read_text()
    # Narrow the base deployment to site a: cam-b1 loses it, and no other base deployment targets it.
    condition = re.search(r'targetCondition: "(tags.environment=\'\w+\')"', text)
    assert condition is not None
    path.write_text(text.replace(condition.group(0), f'targetCondition: "{condition.group(1)} AND tags.site=\'a\'"',
                                 1))
    plan = ws.plan_json()
    assert plan["warnings"] == []  # an update in place: nothing deleted
    new_content(ws)
    warned = ws.plan_json()["warnings"]
    assert warned == [f"deployment/iris-base: 1 device(s) that {base_id} reaches now would be left with no base "
                      "deployment (they keep running their modules, unmanaged)"], warned


def test_a_label_change_mid_rollout_refreshes_both_versions_in_place(ws: Workspace, backend: Backend,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stable, candidate = started(backend, ws, monkeypatch)
    path = ws.env_dir / DEPLOYMENTS
    path.write_text(path.read_text().replace("app: iris\n", "app: iris-fleet\n", 1))
    at(monkeypatch, "10:10", backend)
    plan = ws.plan_json()
    assert [(c["action"], c["target"], c["rollout"]["step"]) for c in plan["changes"]] == [  # type: ignore[union-attr]
        ("rollout", stable, "refresh"), ("rollout", candidate, "refresh")]
    assert "Rollout steps taken: 0." in ws.apply("--rollouts-only").out  # not a rollout's progress
    ws.apply()
    state = {d.id: d for d in snapshot(ws.env_dir).deployments}
    assert state[stable].labels["app"] == state[candidate].labels["app"] == "iris-fleet"
    assert state[candidate].rollout.ring == "canary" and state[candidate].rollout.since == "2026-11-28T10:00:00Z"
    assert runs(backend, ws) == {"cam-a1": stable, "cam-a2": stable, "cam-b1": candidate}
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0
