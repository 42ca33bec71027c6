"""Through the CLI, on Azure with ``azure.images.builder: acr-tasks``: what only this builder does (every other
scenario runs on it too: the ``azure-acr-tasks`` backend of ``conftest.BACKENDS``)."""

from __future__ import annotations

import pytest

from tests.azure_emulator import acr_tasks
from tests.e2e.backends import AzureBackend, snapshot
from tests.e2e.helpers import Workspace

pytestmark = pytest.mark.parametrize("backend", ["azure-acr-tasks"], indirect=True)

NOISE = [" ---> 0123456789ab", "", "Removing intermediate container 0123456789ab"]


def test_a_failed_build_exits_1_with_the_end_of_its_log_and_deploys_nothing(ws: Workspace,
                                                                           backend: AzureBackend) -> None:
    log = [f"#{n} pip download" for n in range(80)] + NOISE + ["ERROR: No matching distribution found for numpy==0"]
    acr_tasks.fail_next_run(backend.emulator.state, "failed during run, err: exit status 1", log)
    result = ws.run("apply", ws.env, "--auto-approve")
    assert result.code == 1
    output = result.out + result.err
    assert "Traceback" not in output
    assert "the ACR Tasks run ca1 ended Failed: failed during run, err: exit status 1" in output
    assert "ERROR: No matching distribution found for numpy==0" in output
    assert "#79 pip download" in output and "#5 pip download" not in output and "intermediate container" not in output
    assert "run `reconciler plan` to see what remains" in output
    state = snapshot(ws.env_dir)
    assert state.images == () and [d for d in state.deployments if d.owner == "prod"] == []
    ws.apply()  # the cause is gone (the failure was injected once): the next apply converges
    state = snapshot(ws.env_dir)
    assert len(state.images) == 1 and [d for d in state.deployments if d.owner == "prod"]


def test_builds_of_one_apply_run_at_once(ws: Workspace, backend: AzureBackend) -> None:
    images = ws.env_dir / "images.yaml"
    text = images.read_text()
    second = text.replace("name: iris-scorer ", "name: iris-scorer-b ", 1)
    assert second != text
    images.write_text(f"{text}---\n{second}")  # a second Image spec: the same files, another name
    acr_tasks.set_run_duration(backend.emulator.state, 1.0)
    ws.apply()
    runs = sorted(acr_tasks.runs_of(backend.emulator.state), key=lambda run: run.created)
    assert sorted(run.request["imageNames"][0].split(":")[0] for run in runs) == ["iris-scorer", "iris-scorer-b"]
    assert runs[1].created < runs[0].created + runs[0].duration  # the second started while the first ran
    assert len(snapshot(ws.env_dir).images) == 2
