"""Local-backend specifics: golden plan outputs and the simulated devices' view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import Workspace, check_golden

pytestmark = pytest.mark.parametrize("backend", ["local"], indirect=True)


def test_devices_show_their_effective_modules(ws: Workspace) -> None:
    ws.apply()
    shown = ws.run("device", ws.env, "show", "cam-a1")
    assert shown.code == 0
    lines = shown.out.splitlines()
    scorer = next(line for line in lines if line.startswith("scorer"))
    sensor = next(line for line in lines if line.startswith("sensor"))
    assert "localhost/iris-scorer:" in scorer and "iris-base-" in scorer
    assert "azureiotedge-simulated-temperature-sensor" in sensor and "iris-site-a-sensor-" in sensor
    assert "sensor" not in ws.run("device", ws.env, "show", "cam-b1").out


def test_first_plan_golden_outputs(ws: Workspace) -> None:
    check_golden("plan/first-apply.txt", ws.run("plan", ws.env).out)
    check_golden("plan/first-apply.md", ws.run("plan", ws.env, "--format", "markdown").out)
    check_golden("plan/first-apply.json", ws.run("plan", ws.env, "--format", "json").out)


def test_model_change_golden_outputs(ws: Workspace) -> None:
    ws.apply()
    ws.edit("models/iris/model/model.json", '"classes"', '"comment": "retrained", "classes"')
    check_golden("plan/model-change.txt", ws.run("plan", ws.env).out)
    check_golden("plan/model-change.md", ws.run("plan", ws.env, "--format", "markdown").out)
    check_golden("plan/model-change.json", ws.run("plan", ws.env, "--format", "json").out)


def test_prune_golden_output(ws: Workspace) -> None:
    ws.apply()
    path = ws.env_dir / "deployments.yaml"
    path.write_text(path.read_text().split("\n---")[0] + "\n")
    check_golden("plan/prune.txt", ws.run("plan", ws.env, "--prune").out)


def test_the_registry_password_never_leaves_the_secrets_folder(ws: Workspace, tmp_path: Path) -> None:
    saved = ws.root / "plan.json"
    outputs = [ws.run("plan", ws.env, "--out", str(saved)), ws.run("apply", str(saved))]
    secret_file = tmp_path / "state" / "secrets" / "registry-local.json"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    password = json.loads(secret_file.read_text())["password"]
    assert len(password) >= 20
    ws.edit(f"{ws.env}/deployments.yaml", "priority: 10", "priority: 12")
    outputs += [ws.run("plan", ws.env, "--format", fmt) for fmt in ("text", "json", "markdown")]
    outputs += [ws.run("drift", ws.env, "--format", fmt) for fmt in ("text", "json", "markdown")]
    outputs.append(ws.run("device", ws.env, "show", "cam-a1"))
    for result in outputs:
        assert password not in result.out + result.err
    leaked = [path for path in (tmp_path / "state").rglob("*")
              if path.is_file() and "secrets" not in path.parts and password.encode() in path.read_bytes()]
    assert leaked == []
    assert password not in saved.read_text()
