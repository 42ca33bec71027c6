"""The pure parts of behaviour: comparison and gates, and the user's traceback cut out of the
server's log (as azmlinfsrv 1.5 writes it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.behaviour.server import user_traceback
from reconciler.core.behaviour import evaluate, report_to_dict, run_from_dict, run_to_dict
from reconciler.model.behaviour import ChangedOutputsLimit, Gates, Sample
from reconciler.model.behaviour_results import BehaviourReport, Latency, RunResult, SampleResult

SAMPLES = [Sample("a", b'{"x": 1}', ["cat"], True), Sample("b", b'{"x": 2}', ["dog"], True),
           Sample("c", b'{"x": 3}'), Sample("d", b'{"x": 4}')]
FAST = Latency(1.0, 2.0, 20)


def run(*outputs: object, latency: Latency = FAST) -> RunResult:
    return RunResult(tuple(SampleResult(s.name, output=o) for s, o in zip(SAMPLES, outputs, strict=True)), latency)


OLD = run(["cat"], ["dog"], 1, 2)


@pytest.mark.parametrize(("new", "gates", "changed", "failures"), [
    (run(["cat"], ["dog"], 1, 2), Gates(ChangedOutputsLimit(0, False)), 0, []),
    (run(["cat"], ["dog"], 1, 3), Gates(ChangedOutputsLimit(0, False)), 1,
     ["1 of 4 outputs changed; gates.maxChangedOutputs allows 0"]),
    (run(["cat"], ["dog"], 1, 3), Gates(ChangedOutputsLimit(25, True)), 1, []),
    (run(["cat"], ["dog"], 0, 3), Gates(ChangedOutputsLimit(25, True)), 2,
     ["2 of 4 outputs changed; gates.maxChangedOutputs allows 25%"]),
    (run(["dog"], ["dog"], 1, 2), Gates(), 1,
     ["1 sample(s) differ from their .expected.json: a (gates.mustMatchExpected)"]),
    (run(["dog"], ["dog"], 1, 2), Gates(must_match_expected=False), 1, []),
    (run(["cat"], ["dog"], 1, 2, latency=Latency(5.0, 51.0, 20)), Gates(max_latency_p95_ms=50), 0,
     ["p95 latency 51 ms is over gates.maxLatencyP95Ms (50 ms)"]),
])
def test_gates(new: RunResult, gates: Gates, changed: int, failures: list[str]) -> None:
    result = evaluate("scorer", "scorer:abc", SAMPLES, new, OLD, gates)
    assert (result.changed, list(result.failures)) == (changed, failures)
    assert len(result.differences) == min(changed, 3)


def test_a_failed_sample_is_a_change_and_a_failure_without_a_deployed_side_there_is_no_change_count() -> None:
    new = RunResult((SampleResult("a", output=["cat"]), SampleResult("b", error="HTTP 500: boom", detail="trace"),
                     SampleResult("c", output=1), SampleResult("d", output=2)), FAST)
    compared = evaluate("scorer", "scorer:abc", SAMPLES, new, OLD, Gates())
    assert compared.changed == 1 and compared.errors == 1 and compared.unexpected == 0
    assert compared.differences[0].after == {"error": "HTTP 500: boom"}
    assert compared.first_error == "sample b: HTTP 500: boom\ntrace"
    alone = evaluate("scorer", "scorer:abc", SAMPLES, new, None, Gates(ChangedOutputsLimit(0, False)))
    assert alone.changed is None and alone.failures == ("1 sample(s) got no answer: b",)
    assert report_to_dict(BehaviourReport((alone,)))["images"][0]["latency_ms"] == {
        "before": None, "after": {"p50": 1.0, "p95": 2.0, "requests": 20}}


def test_runs_survive_the_cache_format() -> None:
    assert run_from_dict(run_to_dict(OLD)) == OLD


SERVER_LOG = """2026-11-28 10:06:31,942 E [21430] azmlinfsrv - User's init function failed
2026-11-28 10:06:31,943 E [21430] azmlinfsrv - Encountered Exception Traceback (most recent call last):
  File "/venv/site-packages/azureml_inference_server_http/server/user_script.py", line 119, in invoke_init
    self._user_init()
  File "/work/app/score.py", line 8, in init
    model = _load("/nonexistent/model.json")
            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/work/app/lib/io.py", line 4, in _load
    return json.loads(open(path).read())
                      ^^^^^^^^^^
FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/model.json'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/azureml_inference_server_http/server/aml_blueprint.py", line 109, in setup
    self.user_script.invoke_init()
azureml_inference_server_http.server.user_script.UserScriptException: Caught an unhandled exception
"""


def test_the_users_traceback_keeps_their_frames_and_the_exception_only() -> None:
    trace = user_traceback(SERVER_LOG.splitlines(), Path("/work/app"), {"score.py": "models/x/score.py"})
    assert trace == "\n".join([
        "Traceback (most recent call last), your frames only:",
        '  File "models/x/score.py", line 8, in init',
        '    model = _load("/nonexistent/model.json")',
        "            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        '  File "lib/io.py", line 4, in _load',
        "    return json.loads(open(path).read())",
        "                      ^^^^^^^^^^",
        "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/model.json'",
    ])
    assert user_traceback(["no traceback here"], Path("/work/app"), {}) == ""


def test_models_outside_git_a_file_uri_is_scored_from_its_file_a_registered_version_is_not_downloaded() -> None:
    import pytest

    from reconciler.behaviour.versions import new_version
    from reconciler.errors import BehaviourError
    from reconciler.spec.loader import load_environment
    from tests.core.plan_cases import CASES

    desired = load_environment(CASES / "model-sources-outside-git" / "env")
    image = desired.images["iris-scorer"]
    with pytest.raises(BehaviourError) as raised:
        new_version(desired, image)
    assert str(raised.value) == (
        "the samples of image iris-scorer are not run: model iris-labels is not on this machine (registered version "
        "iris-labels-pipeline:4); run `reconciler plan --skip-behaviour`, or point the model at its files")
    only_uri = type(image)(**{**image.__dict__, "models": ("iris-classifier",)})
    [model] = new_version(desired, only_uri).models
    assert model.files == {"model.json": "/srv/models/iris/v2/model.json"}
