"""The behaviour diff on the Azure backend: the real SDKs against the emulator (``tests/azure_emulator``), the
real Azure ML inference server on both sides. The deployed side is what the image build recorded (the app, the
conda file, the model versions: in the workspace's artifact store on SDK v1, in its default datastore's blobs on
SDK v2) and the model version's files through the SDK's model download: nothing of the repository's current
files. Every builder records: ``aml`` and ``acr-tasks`` on SDK v1, ``acr-tasks`` on SDK v2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.azure import conftest as azure_fixtures
from tests.azure.conftest import AzureWorld
from tests.behaviour.conftest import pin_running_python
from tests.behaviour.test_behaviour import flip_versicolor_and_virginica
from tests.e2e.helpers import Workspace

# The Azure tests' fixtures (a fresh emulated Azure per test, one emulator per module), shared here.
azure_emulator = azure_fixtures.azure_emulator
azure_world = azure_fixtures.azure_world

SAMPLES = """  samples:
    path: ../../models/iris-samples
    repeat: 1
  gates:
    maxChangedOutputs: 0
"""


# azure.ml.sdk and azure.images.builder, under spec.azure (as tests/e2e/backends.py writes them)
SETTINGS = {"v1-aml": "", "v1-acr-tasks": "    images:\n      builder: acr-tasks\n",
            "v2-acr-tasks": "    ml:\n      sdk: v2\n"}


def _on_azure(azure_world: AzureWorld, venv_cache: Path, capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch, settings: str = "") -> Workspace:
    """environments/prod on the emulator with these Azure settings, its image with the iris samples, applied once."""
    monkeypatch.setenv("RECONCILER_VENV_CACHE", str(venv_cache))
    if settings:
        azure_world.edit("environment.yaml", "  registries:\n", settings + "  registries:\n")
    root = azure_world.env_dir.parent.parent
    pin_running_python(root / "models" / "iris" / "conda.yaml")
    images = azure_world.env_dir / "images.yaml"
    images.write_text(images.read_text().rstrip("\n") + "\n" + SAMPLES)
    workspace = Workspace(root, azure_world.env_dir, capsys)
    applied = workspace.run("apply", workspace.env, "--auto-approve", "--skip-behaviour")
    assert applied.code == 0, applied.err
    return workspace


@pytest.fixture
def iris_on_azure(azure_world: AzureWorld, venv_cache: Path, capsys: pytest.CaptureFixture[str],
                  monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """environments/prod on the emulator (SDK v1, images by Model.package), applied once."""
    return _on_azure(azure_world, venv_cache, capsys, monkeypatch)


@pytest.fixture(params=sorted(SETTINGS))
def iris_on_each_builder(request: pytest.FixtureRequest, azure_world: AzureWorld, venv_cache: Path,
                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The same, once per SDK and builder: v1 + aml, v1 + acr-tasks, v2 + acr-tasks (the azure-v2 backend)."""
    return _on_azure(azure_world, venv_cache, capsys, monkeypatch, SETTINGS[request.param])


def test_a_changed_model_shows_its_changed_outputs_on_azure(iris_on_azure: Workspace, azure_world: AzureWorld
                                                            ) -> None:
    flip_versicolor_and_virginica(iris_on_azure)
    data = iris_on_azure.run("plan", iris_on_azure.env, "--format", "json")
    assert data.code == 1, data.err
    [image] = json.loads(data.out)["behaviour"]["images"]
    assert image["note"] == "", image["note"]
    assert (image["samples"], image["changed"], image["errors"]) == (6, 4, 0)
    assert {"sample": "versicolor-typical", "request": {"data": [[6.4, 3.2, 4.5, 1.5]]},
            "before": ["versicolor"], "after": ["virginica"]} in image["differences"]
    # What the deployed side read: the build's record (a prefix listing, a blob GET per file), and the model
    # version's files through Model.download (its asset, the asset's prefix listing, a blob GET per file).
    history = [c.path for c in azure_world.emulator.calls("GET") if "/artifacts/prefix/contentinfo/" in c.path]
    assert any("/LocalUpload/edge-reconciler.iris-scorer." in path and path.endswith("/image/") for path in history)
    assert any("/assets/" in c.path for c in azure_world.emulator.calls("GET"))


def test_a_change_of_score_py_alone_shows_changed_outputs_on_azure(iris_on_each_builder: Workspace,
                                                                   azure_world: AzureWorld) -> None:
    workspace = iris_on_each_builder
    sdk_v2 = SETTINGS["v2-acr-tasks"] in (azure_world.env_dir / "environment.yaml").read_text()
    azure_world.emulator.reset_log()
    workspace.edit("models/iris/score.py", "    return predict(_rows(input_data))",
                   "    return [name.upper() for name in predict(_rows(input_data))]")
    text = workspace.run("plan", workspace.env)
    assert text.code == 1
    assert '  ~ setosa-typical: ["setosa"] -> ["SETOSA"]' in text.out, text.out
    assert "  ! 6 of 6 outputs changed; gates.maxChangedOutputs allows 0" in text.out
    assert "not compared" not in text.out
    # The deployed side came from the build's record, and its model files through the SDK's model download.
    reads = [(c.method, c.path, c.query) for c in azure_world.emulator.calls()]
    if sdk_v2:  # List Blobs of the record's folder in the default datastore; models.download lists the model's
        listed = [q["prefix"][0] for method, _, q in reads if method == "GET" and q.get("comp") == ["list"]]
        assert any(p.startswith("LocalUpload/edge-reconciler.iris-scorer.") for p in listed), listed
        assert any(p.startswith("LocalUpload/") and "edge-reconciler" not in p for p in listed), listed
        assert not any("/artifact/" in path for _, path, _ in reads)
    else:
        assert any("/artifacts/prefix/contentinfo/LocalUpload/edge-reconciler.iris-scorer." in path
                   for _, path, _ in reads)


def test_an_image_built_without_a_record_of_its_inputs_gets_a_note_not_a_guess(
        iris_on_azure: Workspace, azure_world: AzureWorld) -> None:
    state = azure_world.emulator.state
    with state.lock:  # as if an older edge-reconciler (or another tool) had built the image
        artifacts = state.service("aml")["artifacts"]
        recorded = [key for key in artifacts if key.startswith("LocalUpload/edge-reconciler.iris-scorer.")]
        assert recorded
        for key in recorded:
            del artifacts[key]
    flip_versicolor_and_virginica(iris_on_azure)
    data = iris_on_azure.run("plan", iris_on_azure.env, "--format", "json")
    assert data.code == 1, data.err  # the new version's answers still differ from the expected ones
    [image] = json.loads(data.out)["behaviour"]["images"]
    label = recorded[0].split("/")[1].rsplit(".", 1)[1]
    assert image["note"] == (
        f"the deployed side is not compared: image/iris-scorer:{label}: nothing is recorded of what it was built "
        "from (it was built before edge-reconciler recorded build inputs, or by another tool); its next build "
        "records them")
    assert image["changed"] is None and image["unexpected"] == 4  # no deployed side: nothing to compare
