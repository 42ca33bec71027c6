"""Models that do not live in git (``spec.source``), end to end through the CLI on every backend: a version
registered outside the specs, one file at a URI with its digest pinned, a digest that does not match, and
the plans of the images that package them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from reconciler.spec.fingerprints import uri_fingerprint
from tests.e2e.backends import Backend, snapshot
from tests.e2e.helpers import Workspace, actions

MODELS = "models.yaml"
PATH_LINE = "  path: ../../models/iris/model\n"
WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "iris" / "model" / "model.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def models_file(ws: Workspace) -> str:
    return str((ws.env_dir / MODELS).relative_to(ws.root))


def use_uri(ws: Workspace, uri: str, digest: str) -> None:
    ws.edit(models_file(ws), PATH_LINE, f"  source:\n    uri: {uri}\n    digest: sha256:{digest}\n")


def use_registered(ws: Workspace, name: str, version: int) -> None:
    """The Model spec names a registered version: nothing of its own to set (no description, tags, properties)."""
    path = ws.env_dir / MODELS
    text = path.read_text()
    header = text[: text.index("apiVersion:")]
    path.write_text(header + "apiVersion: reconciler/v1\nkind: Model\nmetadata:\n  name: iris-classifier\nspec:\n"
                    f"  source:\n    registered: {{name: {name}, version: {version}}}\n")


def test_uri_source_registers_the_pinned_file_and_replans_to_no_changes(ws: Workspace, backend: Backend) -> None:
    data = WEIGHTS.read_bytes()
    uri = backend.model_uri("model.json", data)
    use_uri(ws, uri, sha256(data))

    plan = ws.plan_json()
    assert actions(plan)[:2] == [("model/iris-classifier", "create"), ("image/iris-scorer", "create")]
    model = plan["changes"][0]  # type: ignore[index]
    assert model["reason"] == f"new model: registers version 1 from {uri} (sha256:{sha256(data)})"
    fingerprint = uri_fingerprint("model.json", sha256(data))
    image = plan["changes"][1]  # type: ignore[index]
    assert {"path": "models.iris-classifier", "before": None, "after": fingerprint} in image["fields"]

    ws.apply()
    state = snapshot(ws.env_dir)
    [version] = [m for m in state.models if m.name == "iris-classifier"]
    assert (version.version, version.owner, version.fingerprint) == (1, state.environment, fingerprint)
    if backend.name == "azure":
        backend.emulator.reset_log()  # type: ignore[attr-defined]
    again = ws.run("plan", ws.env, "--detailed-exitcode")
    assert (again.code, again.out) == (0, "No changes. The actual state matches the specs.\n"), again.err
    if backend.name == "azure":  # a version with this digest is registered: the blob is not read again
        assert backend.emulator.log.requests(host="contosomodels.blob.core.windows.net") == []  # type: ignore[attr-defined]

    # New bytes at a new URI, pinned: a new model version, so a new image version and a replaced deployment.
    retrained = data.replace(b'"classes"', b'"comment": "retrained", "classes"')
    assert retrained != data
    use_uri_again = backend.model_uri("model-v2.json", retrained)
    ws.edit(models_file(ws), f"    uri: {uri}\n    digest: sha256:{sha256(data)}\n",
            f"    uri: {use_uri_again}\n    digest: sha256:{sha256(retrained)}\n")
    plan = ws.plan_json()
    assert actions(plan) == [("model/iris-classifier", "update"), ("image/iris-scorer", "update"),
                             ("deployment/iris-base", "replace")]
    assert plan["changes"][0]["reason"] == (  # type: ignore[index]
        f"model digest changed: registers version 2 from {use_uri_again} (sha256:{sha256(retrained)})")
    ws.apply()
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0


def test_uri_whose_digest_does_not_match_is_refused_and_nothing_is_written(ws: Workspace, backend: Backend) -> None:
    data = WEIGHTS.read_bytes()
    uri = backend.model_uri("model.json", data)
    wrong = sha256(b"the file that was reviewed")
    use_uri(ws, uri, wrong)
    before = snapshot(ws.env_dir)
    line = 1 + (ws.env_dir / MODELS).read_text().splitlines().index(f"    digest: sha256:{wrong}")
    message = (f"{models_file(ws)}:{line}:13: Model/iris-classifier: spec.source.digest: the file at {uri} has digest "
               f"sha256:{sha256(data)}, not the pinned sha256:{wrong}; if the new file is the one you want, pin its "
               "digest (nothing was registered)\n")

    planned = ws.run("plan", ws.env)
    assert planned.code == 1
    assert message in planned.err and "Traceback" not in planned.err
    applied = ws.run("apply", ws.env, "--auto-approve")
    assert applied.code == 1
    assert message in applied.err
    assert snapshot(ws.env_dir) == before  # not the model, not the image, not a deployment
    assert before.models == before.images == before.deployments == ()
    if backend.name == "azure":  # not even an upload: the blob was only read
        log = backend.emulator.log  # type: ignore[attr-defined]
        assert log.requests("POST", path_contains="/models") == log.requests("POST", path_contains="/artifact") == []


def test_registered_source_is_packaged_as_it_is(ws: Workspace, backend: Backend, tmp_path: Path) -> None:
    weights = tmp_path / "pipeline-output" / "model.json"
    weights.parent.mkdir()
    weights.write_bytes(WEIGHTS.read_bytes())
    assert backend.register_model(ws.env_dir, "iris-pipeline", weights) == 1
    second = backend.register_model(ws.env_dir, "iris-pipeline", weights)
    use_registered(ws, "iris-pipeline", second)
    if getattr(backend, "builder", "") == "acr-tasks":  # SDK v2's builder: it packages files from this machine
        refused = ws.run("plan", ws.env)
        assert refused.code == 1 and "Traceback" not in refused.err
        assert f"{MODELS}:11:17: Model/iris-classifier: spec.source.registered: " in refused.err, refused.err
        assert "images built by ACR Tasks (azure.images.builder: acr-tasks" in refused.err
        return

    plan = ws.plan_json()
    assert actions(plan) == [("image/iris-scorer", "create"), ("deployment/iris-base", "create"),
                             ("deployment/iris-site-a-sensor", "create")]
    assert "model/iris-classifier" in plan["unchanged"]  # type: ignore[operator]
    registered = next(m for m in snapshot(ws.env_dir).models if (m.name, m.version) == ("iris-pipeline", second))
    image = plan["changes"][0]  # type: ignore[index]
    assert {"path": "models.iris-classifier", "before": None, "after": registered.fingerprint} in image["fields"]
    if backend.name == "local":  # the local state knows the content: the same file gives the same fingerprint
        assert registered.fingerprint == uri_fingerprint("model.json", sha256(WEIGHTS.read_bytes()))

    ws.apply()
    state = snapshot(ws.env_dir)
    # Nothing registered, nothing taken over. Azure's snapshot lists the owned versions and those specs name;
    # the local state lists every version.
    listed = [("iris-pipeline", 1, None)] if backend.name == "local" else []
    assert [(m.name, m.version, m.owner) for m in state.models if m.name == "iris-pipeline"] == [
        *listed, ("iris-pipeline", second, None)]
    assert [m for m in state.models if m.name == "iris-classifier"] == []
    if backend.name == "local":
        found = json.loads(ws.run("where", ws.env, "image", "iris-scorer", "--format", "json").out)
        assert [i["models"] for i in found["images"]] == [{"iris-pipeline": second}]
    else:
        from tests.azure_emulator import aml

        [package] = aml.packages_submitted(backend.emulator.state)  # type: ignore[attr-defined]
        assert package["modelIds"] == [f"iris-pipeline:{second}"]
    if backend.name == "azure":
        backend.emulator.reset_log()  # type: ignore[attr-defined]
    again = ws.run("plan", ws.env, "--detailed-exitcode")
    assert (again.code, again.out) == (0, "No changes. The actual state matches the specs.\n"), again.err
    if backend.name == "azure":  # one read of the registered version, beside the listing of the owned ones
        log = backend.emulator.log  # type: ignore[attr-defined]
        assert len(log.requests("GET", path_contains="/models/iris-pipeline")) == 1


def test_registered_version_that_does_not_exist_is_named_at_plan_time(ws: Workspace, backend: Backend) -> None:
    use_registered(ws, "iris-pipeline", 7)
    where = "the local state" if backend.name == "local" else "the Azure ML workspace"
    planned = ws.run("plan", ws.env)
    assert planned.code == 1
    line = 1 + (ws.env_dir / MODELS).read_text().splitlines().index(
        "    registered: {name: iris-pipeline, version: 7}")
    problem = (f"model version iris-pipeline:7 does not exist in {where}; name a version that is registered there "
               "(versions are never reused once deleted)")
    if getattr(backend, "builder", "") == "acr-tasks":  # refused before the workspace is read: see the test above
        problem = "images built by ACR Tasks (azure.images.builder: acr-tasks, the builder of SDK v2) package model "
        assert problem in planned.err
        problem = planned.err[planned.err.index(problem):planned.err.index("\n")]
    assert planned.err == (f"{models_file(ws)}:{line}:17: Model/iris-classifier: spec.source.registered: {problem}\n"
                           "error: 1 problem in the specs\n")
    assert "Traceback" not in planned.err
    if getattr(backend, "builder", "") != "acr-tasks":  # there, reading the state refuses these specs as well
        assert snapshot(ws.env_dir).images == ()
