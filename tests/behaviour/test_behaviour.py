"""``reconciler test``, ``plan`` and ``apply`` with behaviour samples, through the CLI, on the real
Azure ML inference server (azmlinfsrv) in a cached virtualenv: nothing here is mocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from reconciler.behaviour.server import free_port
from reconciler.behaviour.venv import COMPLETE, scoring_python
from reconciler.providers.base import SilentProgress
from tests.behaviour.conftest import Workspace
from tests.e2e.backends import snapshot

LAUNCHER = "reconciler/behaviour/launcher.py"


def flip_versicolor_and_virginica(ws: Workspace) -> None:
    """A model that still loads and answers, but swaps two of the three classes."""
    path = ws.root / "models" / "iris" / "model" / "model.json"
    model = json.loads(path.read_text())
    for key in ("weights", "bias"):
        model[key][1], model[key][2] = model[key][2], model[key][1]
    path.write_text(json.dumps(model, indent=2))


def environments(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if (p / COMPLETE).is_file()]


def test_a_good_model_passes_and_the_environment_is_built_once(iris: Workspace, venv_cache: Path) -> None:
    first = iris.run("test", iris.env)
    assert first.code == 0, first.err
    assert first.out.startswith("image/iris-scorer: passed: 6 sample(s), 0 differ from expected, 0 error(s); "
                                "latency p50 "), first.out
    assert "(30 requests)" in first.out

    again = iris.run("test", iris.env, "--image", "iris-scorer")
    assert again.code == 0, again.err
    assert "building the scoring environment" not in again.err  # the cached virtualenv, reused
    assert len(environments(venv_cache)) == 1


def test_an_init_that_raises_fails_with_the_users_traceback_only(iris: Workspace) -> None:
    iris.edit("models/iris/score.py", "    global model\n",
              "    global model\n    _load_weights()\n\n\ndef _load_weights() -> None:\n"
              "    raise RuntimeError('weights are missing')\n\n\ndef _unused() -> None:\n    global model\n")
    result = iris.run("test", iris.env)
    assert result.code == 1
    lines = result.err.splitlines()
    assert "error: models/iris/score.py: init() raised RuntimeError: weights are missing; the server cannot start " \
           "(fix init(), then run `reconciler test` again)" in lines
    trace = result.err[result.err.index("  Traceback"):]
    assert trace == (
        "  Traceback (most recent call last), your frames only:\n"
        '    File "models/iris/score.py", line 43, in init\n'
        "      _load_weights()\n"
        '    File "models/iris/score.py", line 47, in _load_weights\n'
        "      raise RuntimeError('weights are missing')\n"
        "  RuntimeError: weights are missing\n")
    assert "azureml_inference_server_http" not in result.err and "reconciler/" not in result.err


def test_a_changed_model_shows_its_changed_outputs_and_an_exceeded_gate_stops_the_apply(iris: Workspace) -> None:
    created = iris.run("apply", iris.env, "--auto-approve")
    assert created.code == 0, created.err
    flip_versicolor_and_virginica(iris)

    text = iris.run("plan", iris.env)
    assert text.code == 1
    assert "Behaviour of image/iris-scorer (iris-scorer:" in text.out
    assert "  ~ versicolor-typical: [\"versicolor\"] -> [\"virginica\"]" in text.out
    assert "  ! 4 of 6 outputs changed; gates.maxChangedOutputs allows 0" in text.out
    assert "error: behaviour gate exceeded: image/iris-scorer: 4 of 6 outputs changed; gates.maxChangedOutputs " \
           "allows 0" in text.err
    assert "running 6 sample(s)" in text.err

    # The same runs again, from the cache: in JSON, in markdown, and in the refused apply.
    data = iris.run("plan", iris.env, "--format", "json")
    assert data.code == 1 and "running" not in data.err
    [image] = json.loads(data.out)["behaviour"]["images"]
    assert (image["samples"], image["changed"], image["unexpected"], image["errors"]) == (6, 4, 4, 0)
    assert image["differences"][2] == {"sample": "versicolor-typical", "request": {"data": [[6.4, 3.2, 4.5, 1.5]]},
                                       "before": ["versicolor"], "after": ["virginica"]}
    assert image["latency_ms"]["before"]["requests"] == image["latency_ms"]["after"]["requests"] == 30
    markdown = iris.run("plan", iris.env, "--format", "markdown")
    assert "| `versicolor-typical` | `{\"data\": [[6.4,3.2,4.5,1.5]]}` | `[\"versicolor\"]` | `[\"virginica\"]` |" \
        in markdown.out
    refused = iris.run("apply", iris.env, "--auto-approve")
    assert refused.code == 1 and "running" not in refused.err
    assert "error: a behaviour gate is exceeded, so nothing was applied: image/iris-scorer: 4 sample(s) differ" \
        in refused.err
    assert [m.version for m in snapshot(iris.env_dir).models] == [1]

    skipped = iris.run("plan", iris.env, "--skip-behaviour", "--detailed-exitcode")
    assert skipped.code == 2
    assert "Behaviour: skipped (--skip-behaviour); samples not run for: iris-scorer" in skipped.out

    iris.edit("environments/local/images.yaml", "maxChangedOutputs: 0 ", 'maxChangedOutputs: "70%"')
    iris.edit("environments/local/images.yaml", "mustMatchExpected: true", "mustMatchExpected: false")
    allowed = iris.run("plan", iris.env, "--detailed-exitcode")
    assert allowed.code == 2, allowed.err
    assert "running" not in allowed.err  # gates are applied to cached runs
    assert "4 output(s) changed" in allowed.out


def server_processes(parent: int) -> list[int]:
    """Scoring server processes started for the reconciler process ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(LAUNCHER.encode()) for arg in argv) and str(parent).encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_test_run_leaves_no_server_behind(iris: Workspace, signum: int) -> None:
    iris.edit("models/iris/score.py", "    global model\n", "    global model\n    import time\n    time.sleep(120)\n")
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "test", iris.env], cwd=iris.root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not server_processes(process.pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the scoring server never started"
            time.sleep(0.2)
        time.sleep(1.0)  # gunicorn's worker is up too, sleeping in init()
        os.kill(process.pid, signum)
        code = process.wait(10)
        assert code == (130 if signum == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server_processes(process.pid):
            assert time.monotonic() < deadline, f"left behind: {server_processes(process.pid)}"
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_the_scoring_process_cannot_reach_the_network(iris: Workspace) -> None:
    iris.edit("models/iris/score.py", '    return predict(_rows(input_data))',
              '    import socket\n    socket.create_connection(("0.0.0.0", 9), timeout=1)\n'
              '    return predict(_rows(input_data))')
    result = iris.run("test", iris.env, "--image", "iris-scorer")
    assert result.code == 1
    assert "  - 6 sample(s) got no answer: borderline-versicolor-virginica, one-of-each, setosa-typical, " \
           "small-flowers, versicolor-typical" in result.out
    assert "PermissionError: edge-reconciler: network access to '0.0.0.0' is blocked while scoring samples" \
        in result.out


def test_conda_only_packages_are_named_and_point_at_python(iris: Workspace) -> None:
    iris.edit("models/iris/conda.yaml", "  - pip\n", "  - pip\n  - numpy=1.26\n  - conda-forge::scikit-learn\n")
    result = iris.run("test", iris.env)
    assert result.code == 1
    assert result.err == (
        "error: models/iris/conda.yaml lists packages only conda installs: numpy=1.26, conda-forge::scikit-learn. "
        "Behaviour runs build a virtualenv from the `pip:` list: move them there (with their pip names), or make "
        "an interpreter with them and azureml-inference-server-http yourself and pass --python PATH\n")


def test_python_runs_the_interpreter_given_and_refuses_one_without_the_server(iris: Workspace) -> None:
    refused = iris.run("test", iris.env, "--python", sys.executable)
    assert refused.code == 1
    assert f"error: --python {sys.executable}: it cannot import azureml_inference_server_http" in refused.err
    # Any interpreter with the server will do: the cached environment of the iris conda file.
    managed = scoring_python(iris.root / "models" / "iris" / "conda.yaml", SilentProgress()).python
    result = iris.run("test", iris.env, "--python", str(managed))
    assert result.code == 0, result.err
    assert "building the scoring environment" not in result.err
    assert result.out.startswith("image/iris-scorer: passed: 6 sample(s)")


def test_a_sample_that_times_out_is_one_line_and_the_server_is_stopped(iris: Workspace) -> None:
    iris.edit("environments/local/images.yaml", "    repeat: 5 ", "    timeoutSeconds: 1\n    repeat: 5 ")
    iris.edit("models/iris/score.py", '    return predict(_rows(input_data))',
              '    if "6.4" in str(input_data):\n        import time\n        time.sleep(30)\n'
              '    return predict(_rows(input_data))')
    result = iris.run("test", iris.env)
    assert result.code == 1
    assert "error: sample versicolor-typical: no answer within 1 s (spec.samples.timeoutSeconds); run() may hang " \
           "or be too slow for this sample" in result.err.splitlines(), result.err
    assert not server_processes(os.getpid())


def test_serve_answers_curl_until_ctrl_c(iris: Workspace) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "serve", iris.env, "iris-scorer", "--port",
                                str(port)], cwd=iris.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=os.environ.copy())
    try:
        body = (iris.root / "models" / "iris-samples" / "one-of-each.json").read_bytes()
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/score", data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=2) as response:
                    assert json.loads(response.read()) == ["setosa", "versicolor", "virginica"]
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert out.decode().rstrip().endswith("Stopped.")
        assert not server_processes(process.pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_server_that_never_answers_is_one_line_and_is_stopped(iris: Workspace) -> None:
    iris.edit("environments/local/images.yaml", "    repeat: 5 ", "    startTimeoutSeconds: 3\n    repeat: 5 ")
    iris.edit("models/iris/score.py", "    global model\n", "    global model\n    import time\n    time.sleep(60)\n")
    result = iris.run("test", iris.env)
    assert result.code == 1
    assert [line for line in result.err.splitlines() if line.startswith("error:")] == [
        "error: the scoring server did not answer on http://127.0.0.1:" + result.err.split("127.0.0.1:")[1].split()[0]
        + " within 3 s: init() may still be loading or may hang; make it faster, raise "
        "spec.samples.startTimeoutSeconds, or watch it start with `reconciler serve`"]
    assert not server_processes(os.getpid())


def test_a_change_of_score_py_alone_shows_changed_outputs_the_deployed_side_runs_its_own_script(
        iris: Workspace) -> None:
    created = iris.run("apply", iris.env, "--auto-approve")
    assert created.code == 0, created.err
    iris.edit("models/iris/score.py", "    return predict(_rows(input_data))",
              "    return [name.upper() for name in predict(_rows(input_data))]")

    text = iris.run("plan", iris.env)
    assert text.code == 1
    assert '  ~ setosa-typical: ["setosa"] -> ["SETOSA"]' in text.out, text.out
    assert "  ! 6 of 6 outputs changed; gates.maxChangedOutputs allows 0" in text.out
    assert "not compared" not in text.out
