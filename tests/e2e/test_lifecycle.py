"""End to end through the CLI, on every backend: real files, real state.

Each scenario drives ``reconciler`` and inspects the result through the provider's own
snapshot (``backends.snapshot``), so the same assertions hold on the local backend and on
Azure (through the emulator)."""

from __future__ import annotations

import json
import os
import re
import signal
import time

from tests.e2e.backends import Backend, holding_lock, snapshot
from tests.e2e.helpers import Workspace, actions

MODEL_FILE = "models/iris/model/model.json"


def deployments(ws: Workspace) -> dict[str, str]:
    """Owned deployment id -> name."""
    state = snapshot(ws.env_dir)
    return {d.id: d.name for d in state.deployments if d.owner == state.environment}


def test_first_apply_then_no_changes(ws: Workspace) -> None:
    plan = ws.plan_json()
    assert actions(plan) == [
        ("model/iris-classifier", "create"),
        ("image/iris-scorer", "create"),
        ("deployment/iris-base", "create"),
        ("deployment/iris-site-a-sensor", "create"),
    ]
    devices = {c["resource"]: c["devices"] for c in plan["changes"]}  # type: ignore[union-attr]
    assert devices["deployment/iris-base"] == 3
    assert devices["deployment/iris-site-a-sensor"] == 2

    applied = ws.apply()
    assert "Apply complete (a fresh plan): 4 to add, 0 to change, 0 to replace, 0 to destroy." in applied.out

    again = ws.run("plan", ws.env, "--detailed-exitcode")
    assert again.code == 0, again.err
    assert "No changes." in again.out
    assert ws.run("apply", ws.env, "--auto-approve").out.strip() == "No changes. The actual state matches the specs."


def test_model_file_change_registers_a_new_version_and_replaces_the_deployment(ws: Workspace) -> None:
    ws.apply()
    old_ids = set(deployments(ws))
    ws.edit(MODEL_FILE, '"classes"', '"comment": "retrained", "classes"')

    plan = ws.plan_json()
    assert actions(plan) == [
        ("model/iris-classifier", "update"),
        ("image/iris-scorer", "update"),
        ("deployment/iris-base", "replace"),
    ]
    model, image, deployment = plan["changes"]  # type: ignore[misc]
    assert model["reason"] == "model files changed: registers version 2"
    assert image["reason"].startswith("model iris-classifier changed: builds iris-scorer:")
    assert deployment["reason"].startswith("content is immutable in IoT Hub, new id iris-base-")

    ws.apply()
    state = snapshot(ws.env_dir)
    assert sorted(m.version for m in state.models if m.name == "iris-classifier") == [1, 2]  # v1 stays
    assert len([i for i in state.images if i.name == "iris-scorer"]) == 2
    new_ids = set(deployments(ws))
    assert len(new_ids) == 2 and len(new_ids & old_ids) == 1  # base replaced, layered kept
    assert deployment["target"] in new_ids
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0


def test_priority_change_is_applied_in_place(ws: Workspace) -> None:
    ws.apply()
    before = deployments(ws)
    ws.edit(f"{ws.env}/deployments.yaml", "priority: 10", "priority: 15")
    plan = ws.plan_json()
    assert actions(plan) == [("deployment/iris-base", "update")]
    assert plan["changes"][0]["reason"] == "priority 10 -> 15"  # type: ignore[index]
    ws.apply()
    assert deployments(ws) == before  # same ids: updated, not replaced
    base = next(d for d in snapshot(ws.env_dir).deployments if d.name == "iris-base")
    assert base.priority == 15


def test_removed_spec_is_kept_without_prune_and_deleted_with_it(ws: Workspace) -> None:
    ws.apply()
    path = ws.env_dir / "deployments.yaml"
    path.write_text(path.read_text().split("\n---")[0] + "\n")  # keep only the base deployment
    plan = ws.plan_json()
    assert plan["changes"] == [] and plan["orphans"] == ["deployment/iris-site-a-sensor"]
    assert "Owned but no longer in the specs (kept; apply with --prune to delete):" in ws.run("plan", ws.env).out

    ws.apply()
    assert sorted(deployments(ws).values()) == ["iris-base", "iris-site-a-sensor"]
    pruned = ws.apply("--prune")
    assert "0 to add, 0 to change, 0 to replace, 1 to destroy" in pruned.out
    assert sorted(deployments(ws).values()) == ["iris-base"]


def test_unmanaged_deployments_are_listed_and_never_touched(ws: Workspace, backend: Backend) -> None:
    ws.apply()
    backend.create_unmanaged(ws.env_dir, "hand-made", "tags.site='a'", 50, layered=True)
    plan = ws.plan_json("--prune")
    assert plan["changes"] == []
    assert plan["unmanaged"] == ["deployment/hand-made"]
    ws.apply("--prune")
    hand_made = next(d for d in snapshot(ws.env_dir).deployments if d.id == "hand-made")
    assert (hand_made.owner, hand_made.priority) == (None, 50)


def test_saved_plan_is_applied_exactly_and_refused_once_stale(ws: Workspace) -> None:
    saved = ws.root / "plan.json"
    assert ws.run("plan", ws.env, "--out", str(saved)).code == 0
    assert json.loads(saved.read_text())["summary"] == {"add": 4, "change": 0, "replace": 0, "destroy": 0}
    applied = ws.run("apply", str(saved))
    assert applied.code == 0, applied.err
    assert "Apply complete (the saved plan)" in applied.out

    stale = ws.run("apply", str(saved))
    assert stale.code == 1
    assert "the actual state changed since this plan was made" in stale.err
    assert "Traceback" not in stale.err

    assert ws.run("plan", ws.env, "--out", str(saved)).code == 0
    ws.edit(f"{ws.env}/deployments.yaml", "priority: 10", "priority: 11")
    moved = ws.run("apply", str(saved))
    assert moved.code == 1
    assert "the specs (or the files they use) changed since this plan was made" in moved.err


def test_concurrent_apply_is_refused_with_the_holder_named(ws: Workspace) -> None:
    with holding_lock(ws.env_dir, "alice@ci-runner-7 pid 4242"):
        refused = ws.run("apply", ws.env, "--auto-approve")
    assert refused.code == 1
    assert "alice@ci-runner-7 pid 4242" in refused.err
    assert ws.run("apply", ws.env, "--auto-approve").code == 0


def test_force_unlock_removes_only_the_lock_it_names(ws: Workspace) -> None:
    """A lock whose run died (here: still held, as by a runner that vanished): the refusal prints the lock id,
    `force-unlock` with another id or without confirmation removes nothing, and with the id removes it."""
    with holding_lock(ws.env_dir, "a runner that vanished"):
        refused = ws.run("apply", ws.env, "--auto-approve")
        assert refused.code == 1
        match = re.search(r"reconciler force-unlock <ENV_DIR> ([0-9a-f]{16})", refused.err)
        assert match, refused.err
        lock_id = match.group(1)
        assert f"lock id {lock_id}" in refused.err
        wrong = ws.run("force-unlock", ws.env, "0123456789abcdef", "--force")
        assert wrong.code == 1 and f"has lock id {lock_id}" in wrong.err and "nothing was removed" in wrong.err
        unconfirmed = ws.run("force-unlock", ws.env, lock_id)  # no terminal to confirm on
        assert unconfirmed.code == 1 and "--force" in unconfirmed.err
        assert ws.run("apply", ws.env, "--auto-approve").code == 1  # still locked
        removed = ws.run("force-unlock", ws.env, lock_id, "--force")
        assert removed.code == 0, removed.err
        assert "held by a runner that vanished" in removed.out
        assert ws.run("apply", ws.env, "--auto-approve").code == 0
    assert ws.run("force-unlock", ws.env, lock_id, "--force").code == 1  # nothing to unlock any more
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0


def test_apply_killed_halfway_converges_on_the_next_run(ws: Workspace, backend: Backend) -> None:
    ws.edit(MODEL_FILE, '"classes"', '"comment": "v1", "classes"')
    # The killed run cannot release its lock. The local lock is taken over at once (its
    # process is gone); a lock in Azure, shared by CI runners on other machines, only once
    # it expires: a short lifetime keeps this test quick, and long enough that the run which
    # finds it held starts within it on a loaded machine (3 s was not; azure-ai-ml's import alone
    # takes 3-5 s there on SDK v2).
    ttl = 12.0
    environ = {**os.environ, "RECONCILER_LOCK_TTL": str(ttl)}
    process = ws.subprocess("apply", ws.env, "--auto-approve", env=environ)
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("+ image/"):  # the model is registered; the image build starts now
            process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    if backend.name == "azure":
        held = ws.subprocess("apply", ws.env, "--auto-approve", env=environ)
        _, err = held.communicate(timeout=120)
        assert held.returncode == 1 and "another apply holds the lock of environment prod" in err
        # The record expires at most one lifetime after the killed run's last renewal.
        time.sleep(max(0.0, killed_at + ttl + 0.5 - time.monotonic()))
    resumed = ws.subprocess("apply", ws.env, "--auto-approve", env=environ)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0
    state = snapshot(ws.env_dir)
    assert [m.version for m in state.models if m.owner == state.environment] == [1]  # nothing registered twice
    assert sorted(deployments(ws).values()) == ["iris-base", "iris-site-a-sensor"]


def test_drift_reports_hand_edits_and_shadowing(ws: Workspace, backend: Backend) -> None:
    ws.apply()
    clean = ws.run("drift", ws.env)
    assert clean.code == 0, clean.err
    assert "No drift" in clean.out

    base_id = next(i for i, name in deployments(ws).items() if name == "iris-base")
    backend.set_priority_out_of_band(ws.env_dir, base_id, 3)
    backend.create_unmanaged(ws.env_dir, "hotfix", "tags.site='b'", 90, layered=False)
    drifted = ws.run("drift", ws.env)
    assert drifted.code == 2
    assert "deployment/iris-base: edited outside git: priority is 3, the specs say 10" in drifted.out
    if backend.name == "azure":  # the hub has not evaluated the deployments yet: no figures, no shadowing
        assert "not evaluated yet" in drifted.out and "loses to" not in drifted.out
        backend.pass_evaluation_cycle()
        drifted = ws.run("drift", ws.env)
    assert "loses to unmanaged deployment hotfix (priority 90)" in drifted.out


def test_credential_rotation_replaces_the_deployments_that_embed_them(ws: Workspace, backend: Backend) -> None:
    ws.apply()
    registry = "local" if backend.name == "local" else "workspace"
    rotated = ws.run("rotate-credentials", ws.env, registry)
    assert rotated.code == 0, rotated.err
    assert f"Registry {registry} now uses credential version" in rotated.out
    plan = ws.plan_json()
    # Only the base deployment pulls from the registry; the layered one uses a public image.
    assert actions(plan) == [("deployment/iris-base", "replace")]
    reason = plan["changes"][0]["reason"]  # type: ignore[index]
    if backend.name == "local":  # same user, new password: only the credential version moved
        assert reason.endswith("registry credentials rotated")
    else:  # a new pull token: its name is the username
        assert "registryCredentials.workspace.username 'er-prod-workspace-" in reason and "-v2'" in reason
    ws.apply()
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0
    assert ws.run("rotate-credentials", ws.env, "nope").code == 1
