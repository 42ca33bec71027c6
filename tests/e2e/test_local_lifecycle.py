"""End to end through the CLI on the local backend: real files, real SQLite state."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import copy_sample
from tests.e2e.helpers import Workspace, actions, check_golden

DEVICES = {"cam-a1": ("dev", "a"), "cam-a2": ("dev", "a"), "cam-b1": ("dev", "b"), "prod-1": ("prod", "a")}


@pytest.fixture
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Workspace:
    root = tmp_path / "repo"
    env_dir = copy_sample(root)
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    workspace = Workspace(root, env_dir, capsys)
    for name, (environment, site) in DEVICES.items():
        result = workspace.run("device", workspace.env, "add", name, "--tag", f"environment={environment}",
                               "--tag", f"site={site}")
        assert result.code == 0, result.err
    return workspace


def state_db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "state" / "state.db")


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
    assert again.code == 0
    assert "No changes." in again.out
    assert ws.run("apply", ws.env, "--auto-approve").out.strip() == "No changes. The actual state matches the specs."

    shown = ws.run("device", ws.env, "show", "cam-a1")
    assert shown.code == 0
    assert "scorer" in shown.out and "sensor" in shown.out
    assert "iris-site-a-sensor-" in shown.out and "iris-base-" in shown.out
    assert "sensor" not in ws.run("device", ws.env, "show", "cam-b1").out


def test_model_file_change_registers_a_new_version_and_replaces_the_deployment(ws: Workspace, tmp_path: Path) -> None:
    ws.apply()
    old_ids = {row[0] for row in state_db(tmp_path).execute("SELECT id FROM deployments")}
    ws.edit("models/iris/model/model.json", '"classes"', '"comment": "retrained", "classes"')

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
    check_golden("plan/model-change.txt", ws.run("plan", ws.env).out)
    check_golden("plan/model-change.md", ws.run("plan", ws.env, "--format", "markdown").out)
    check_golden("plan/model-change.json", ws.run("plan", ws.env, "--format", "json").out)

    ws.apply()
    db = state_db(tmp_path)
    versions = [row[0] for row in db.execute("SELECT version FROM models WHERE name='iris-classifier' ORDER BY 1")]
    assert versions == [1, 2]  # the old version stays
    assert db.execute("SELECT count(*) FROM images WHERE name='iris-scorer'").fetchone()[0] == 2
    new_ids = {row[0] for row in db.execute("SELECT id FROM deployments")}
    assert len(new_ids) == 2 and len(new_ids & old_ids) == 1  # base replaced, layered kept
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0


def test_priority_change_is_applied_in_place(ws: Workspace, tmp_path: Path) -> None:
    ws.apply()
    before = dict(state_db(tmp_path).execute("SELECT name, id FROM deployments"))
    ws.edit("environments/local/deployments.yaml", "priority: 10", "priority: 15")
    plan = ws.plan_json()
    assert actions(plan) == [("deployment/iris-base", "update")]
    assert plan["changes"][0]["reason"] == "priority 10 -> 15"  # type: ignore[index]
    ws.apply()
    after = dict(state_db(tmp_path).execute("SELECT name, id FROM deployments"))
    assert after == before
    assert state_db(tmp_path).execute("SELECT priority FROM deployments WHERE name='iris-base'").fetchone() == (15,)


def test_removed_spec_is_kept_without_prune_and_deleted_with_it(ws: Workspace, tmp_path: Path) -> None:
    ws.apply()
    path = ws.env_dir / "deployments.yaml"
    documents = path.read_text().split("\n---")
    path.write_text(documents[0] + "\n")  # keep only the base deployment
    plan = ws.plan_json()
    assert plan["changes"] == [] and plan["orphans"] == ["deployment/iris-site-a-sensor"]
    text = ws.run("plan", ws.env).out
    assert "Owned but no longer in the specs (kept; apply with --prune to delete):" in text
    check_golden("plan/prune.txt", ws.run("plan", ws.env, "--prune").out)

    ws.apply()
    assert state_db(tmp_path).execute("SELECT count(*) FROM deployments").fetchone() == (2,)
    pruned = ws.apply("--prune")
    assert "0 to add, 0 to change, 0 to replace, 1 to destroy" in pruned.out
    assert state_db(tmp_path).execute("SELECT count(*) FROM deployments").fetchone() == (1,)


def test_unmanaged_deployments_are_listed_and_never_touched(ws: Workspace, tmp_path: Path) -> None:
    ws.apply()
    from reconciler.providers.local.provider import LocalProvider

    from reconciler.spec.loader import load_environment

    provider = LocalProvider(load_environment(ws.env_dir).environment)
    provider.create_unmanaged_deployment("hand-made", {"$edgeAgent": {}}, "tags.site='a'", 50, layered=True)
    provider.close()

    plan = ws.plan_json("--prune")
    assert plan["changes"] == []
    assert plan["unmanaged"] == ["deployment/hand-made"]
    ws.apply("--prune")
    row = state_db(tmp_path).execute("SELECT priority FROM deployments WHERE id='hand-made'").fetchone()
    assert row == (50,)


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
    ws.edit("environments/local/deployments.yaml", "priority: 10", "priority: 11")
    moved = ws.run("apply", str(saved))
    assert moved.code == 1
    assert "the specs (or the files they use) changed since this plan was made" in moved.err


def test_concurrent_apply_is_refused_with_the_holder_named(ws: Workspace) -> None:
    from reconciler.providers.local.provider import LocalProvider

    from reconciler.spec.loader import load_environment

    provider = LocalProvider(load_environment(ws.env_dir).environment)
    with provider.lock("alice@ci-runner-7 pid 4242"):
        refused = ws.run("apply", ws.env, "--auto-approve")
    provider.close()
    assert refused.code == 1
    assert "alice@ci-runner-7 pid 4242" in refused.err
    assert ws.run("apply", ws.env, "--auto-approve").code == 0


def test_apply_killed_halfway_converges_on_the_next_run(ws: Workspace, tmp_path: Path) -> None:
    ws.edit("models/iris/model/model.json", '"classes"', '"comment": "v1", "classes"')
    process = ws.subprocess("apply", ws.env, "--auto-approve")
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("+ image/"):  # the model is registered; the image build starts now
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    resumed = ws.subprocess("apply", ws.env, "--auto-approve")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0
    db = state_db(tmp_path)
    assert db.execute("SELECT count(*) FROM models").fetchone() == (1,)  # nothing registered twice
    assert db.execute("SELECT count(*) FROM deployments").fetchone() == (2,)


def test_first_plan_golden_outputs(ws: Workspace) -> None:
    check_golden("plan/first-apply.txt", ws.run("plan", ws.env).out)
    check_golden("plan/first-apply.md", ws.run("plan", ws.env, "--format", "markdown").out)
    check_golden("plan/first-apply.json", ws.run("plan", ws.env, "--format", "json").out)


def test_drift_reports_hand_edits_deletions_and_shadowing(ws: Workspace, tmp_path: Path) -> None:
    ws.apply()
    clean = ws.run("drift", ws.env)
    assert clean.code == 0, clean.err
    assert "No drift" in clean.out

    db = state_db(tmp_path)
    with db:
        db.execute("UPDATE deployments SET priority = 3 WHERE name = 'iris-base'")
    from reconciler.providers.local.provider import LocalProvider

    from reconciler.spec.loader import load_environment

    provider = LocalProvider(load_environment(ws.env_dir).environment)
    provider.create_unmanaged_deployment("hotfix", {"$edgeAgent": {"properties.desired": {"modules": {}}}},
                                         "tags.site='b'", 90)
    provider.close()
    drifted = ws.run("drift", ws.env)
    assert drifted.code == 2
    assert "deployment/iris-base: edited outside git: priority is 3, the specs say 10" in drifted.out
    assert "loses to unmanaged deployment hotfix (priority 90)" in drifted.out
