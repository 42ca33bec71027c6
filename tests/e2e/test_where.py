"""``reconciler where``, end to end on every backend: model version -> images -> deployments -> devices."""

from __future__ import annotations

import json

from tests.e2e.backends import Backend, snapshot
from tests.e2e.helpers import Workspace

MODEL_FILE = "models/iris/model/model.json"


def test_where_traces_a_model_version_to_the_devices(ws: Workspace, backend: Backend) -> None:
    ws.apply()
    ws.edit(MODEL_FILE, '"classes"', '"comment": "retrained", "classes"')
    ws.apply()
    state = snapshot(ws.env_dir)
    base = next(d for d in state.deployments if d.name == "iris-base" and d.owner)
    new, old = sorted(state.images, key=lambda i: i.created, reverse=True)

    found = ws.run("where", ws.env, "model", "iris-classifier:2", "--format", "json")
    assert found.code == 0, found.err
    data = json.loads(found.out)
    assert data["query"] == {"kind": "model", "name": "iris-classifier", "version": "2"}
    assert data["models"] == [{"name": "iris-classifier", "version": 2}]
    assert [(i["reference"], i["models"]) for i in data["images"]] == [(new.reference, {"iris-classifier": 2})]
    [deployment] = data["images"][0]["deployments"]
    assert deployment == {"id": base.id, "name": "iris-base", "managed": True, "modules": ["scorer"],
                          "targetCondition": base.target_condition, "priority": 10, "layered": False,
                          "rolloutCandidate": False, "devices": 3}
    # Azure records nothing on an image: the build before may package version 2 too (with other code).
    assert data["unrecorded"] == ([] if backend.name == "local" else [old.reference])

    if backend.name == "azure":  # one device query per deployment, and only that one
        emulator = backend.emulator  # type: ignore[attr-defined]
        emulator.reset_log()
    listed = ws.run("where", ws.env, "model", "iris-classifier:2", "--devices")
    if backend.name == "azure":
        [query] = emulator.log.requests("POST", path_contains="/devices/query")
        assert json.loads(query.body)["query"] == (
            f"SELECT deviceId FROM devices WHERE capabilities.iotEdge = true AND ({base.target_condition})")
    assert listed.code == 0, listed.err
    assert listed.out == (
        f"model iris-classifier:2 in environment {state.environment}:\n"
        f"  image iris-scorer:{new.label} ({new.reference}, built {new.created}), packages iris-classifier:2\n"
        f"    deployment iris-base ({base.id}), module scorer, priority 10: 3 devices\n"
        "      cam-a1, cam-a2, cam-b1\n"
        + (f"  and 1 other image build(s) whose models the backend does not record (only the build the specs "
           f"describe now is known): {old.reference}\n" if backend.name == "azure" else "")
        + "\n1 image(s), 1 deployment(s), 3 device(s) in all.\n")

    # The first version is in the image built before; no deployment runs that one any more. Only the local
    # backend records what an image packages: on Azure the earlier build is listed as not recorded.
    older = json.loads(ws.run("where", ws.env, "model", "iris-classifier:1", "--format", "json").out)
    if backend.name == "local":
        assert [(i["reference"], i["models"], i["deployments"]) for i in older["images"]] == [
            (old.reference, {"iris-classifier": 1}, [])]
        assert older["unrecorded"] == []
    else:
        assert older["images"] == []
        assert older["unrecorded"] == [old.reference]

    image = json.loads(ws.run("where", ws.env, "image", f"iris-scorer:{new.label}", "--format", "json").out)
    assert [(i["label"], i["models"], [d["id"] for d in i["deployments"]]) for i in image["images"]] == [
        (new.label, {"iris-classifier": 2}, [base.id])]
    every = json.loads(ws.run("where", ws.env, "image", "iris-scorer", "--format", "json").out)
    assert [i["label"] for i in every["images"]] == [new.label, old.label]


def test_where_refuses_what_is_not_there(ws: Workspace) -> None:
    ws.apply()
    missing = ws.run("where", ws.env, "model", "iris-classifier:7")
    assert missing.code == 1
    assert missing.err.endswith("model iris-classifier:7: no such version in environment "
                                f"{snapshot(ws.env_dir).environment} (versions: 1)\n")
    image = ws.run("where", ws.env, "image", "iris-scorer:000000000000")
    assert image.code == 1
    assert "image iris-scorer:000000000000: not built in environment" in image.err
    assert ws.run("where", ws.env, "model", "iris-classifier:one").err == (
        "error: a model version is a number: 'iris-classifier:one'\n")
