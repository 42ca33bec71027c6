"""Local-backend specifics: golden plan outputs and the simulated devices' view."""

from __future__ import annotations

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
