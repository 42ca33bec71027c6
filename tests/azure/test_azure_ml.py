"""The Azure ML adapter (azureml-core 1.61 + azure-containerregistry) against the emulator, unpatched SDKs."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.planner import desired_images
from reconciler.errors import PermanentProviderError, TransientProviderError
from reconciler.model import ownership
from reconciler.model.plan import Action, Change, DesiredImage, DesiredModel
from reconciler.model.specs import DesiredState, Fingerprints, Kind, ModelSpec, ResourceKey
from reconciler.model.state import ModelVersion
from reconciler.providers.apply import Executor
from reconciler.providers.azure.ml import AzureMLImageBuilder, AzureMLModelRegistry, WorkspaceConnection
from reconciler.providers.base import Adapters, SilentProgress
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.azure.ml_fixtures import REGISTRY, RG, SUB, WS
from tests.azure_emulator import acr, aml, arm
from tests.azure_emulator.server import AzureEmulator

pytest_plugins = ["tests.azure.ml_fixtures"]

REPO = Path(__file__).resolve().parents[2]
FAST_S = 3.0  # no adapter call may come near the SDK's 5 s poll sleep
MODEL = "iris-classifier"
IMAGE = "iris-scorer"


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def step(self, message: str) -> None:
        self.events.append(("step", message))

    def advance(self, done: int, total: int | None) -> None:
        self.events.append(("advance", done))


def _desired(env: Path) -> tuple[DesiredState, Fingerprints]:
    state = load_environment(env)
    return state, compute_fingerprints(state, HashCache())


def _model_spec(env: Path) -> tuple[ModelSpec, str]:
    state, fingerprints = _desired(env)
    return state.models[MODEL], fingerprints.models[MODEL]


def _image(env: Path, registry: str) -> DesiredImage:
    state, fingerprints = _desired(env)
    return desired_images(state, fingerprints, registry)[IMAGE]


def _server_model(connection: WorkspaceConnection, version: int) -> Any:
    """The version as the service holds it, read with the SDK directly."""
    from azureml.core.model import Model

    return Model(connection.workspace, id=f"{MODEL}:{version}")


def _register(registry: AzureMLModelRegistry, spec: ModelSpec, fingerprint: str) -> ModelVersion:
    """What the apply path does for a new version: the user's tags plus the ownership keys."""
    environment = registry._environment
    registry.register(spec, fingerprint, {**spec.tags, **ownership.ownership_tags(environment, spec.name, fingerprint)},
                      SilentProgress())
    version = registry.newest(spec.name, fingerprint)
    assert version is not None
    return version


def _executor(connection: WorkspaceConnection, env: Path) -> Executor:
    """The apply path over the model registry alone (the model changes these tests make need no other)."""
    registry = AzureMLModelRegistry(connection, "prod")
    adapters = Adapters(registry, AzureMLImageBuilder(connection, "prod"), None, None)  # type: ignore[arg-type]
    return Executor(load_environment(env).environment, adapters, SilentProgress())


def _register_unowned(connection: WorkspaceConnection, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version someone registered by hand: no ownership tags."""
    from azureml.core.model import Model

    monkeypatch.chdir(folder.parent)
    Model.register(connection.workspace, model_path=folder.name, model_name=MODEL, tags={"team": "data"})


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


def test_register_then_changed_files_register_version_2(connection: WorkspaceConnection, prod_env: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    registry = AzureMLModelRegistry(connection, "prod")
    spec, fingerprint = _model_spec(prod_env)
    cwd = Path.cwd()

    first = _register(registry, spec, fingerprint)
    (spec.path / "model.json").write_text('{"weights": [1, 2, 3]}\n')
    spec, changed = _model_spec(prod_env)
    second = _register(registry, spec, changed)

    assert first == ModelVersion(MODEL, 1, fingerprint, spec.description, spec.tags, spec.properties, "prod")
    assert (second.version, second.fingerprint, second.owner) == (2, changed, "prod") and changed != fingerprint
    assert [(v.version, v.fingerprint) for v in sorted(registry.list_owned(), key=lambda v: v.version)] \
        == [(1, fingerprint), (2, changed)]
    stored = _server_model(connection, 2)
    assert stored.tags == {**spec.tags, ownership.MANAGED_BY: ownership.MANAGED_BY_VALUE,
                           ownership.ENVIRONMENT: "prod", ownership.NAME: MODEL}
    assert stored.properties == {**spec.properties, ownership.FINGERPRINT: changed}
    assert Path.cwd() == cwd  # the cwd trick is undone
    assert capsys.readouterr().out == ""  # the SDK's "Registering model ..." stays off the CLI's stdout


def test_register_restores_the_cwd_when_the_upload_fails(connection: WorkspaceConnection, emulator: AzureEmulator,
                                                        prod_env: Path) -> None:
    registry = AzureMLModelRegistry(connection, "prod")
    spec, fingerprint = _model_spec(prod_env)
    connection.workspace  # noqa: B018 - open it before the fault, which hits every MMS call
    emulator.faults.add(method="POST", path="/models$", status=400)
    cwd = Path.cwd()

    with pytest.raises(PermanentProviderError, match=f"model/{MODEL}"):
        _register(registry, spec, fingerprint)
    assert Path.cwd() == cwd


def test_list_owned_returns_only_this_environments_versions(connection: WorkspaceConnection, emulator: AzureEmulator,
                                                            prod_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = AzureMLModelRegistry(connection, "prod")
    spec, fingerprint = _model_spec(prod_env)
    _register(registry, spec, fingerprint)
    _register(AzureMLModelRegistry(connection, "staging"), replace(spec, name="other-model"), fingerprint)
    _register_unowned(connection, spec.path, monkeypatch)
    emulator.reset_log()

    owned = registry.list_owned()

    assert [(v.name, v.version, v.owner) for v in owned] == [(MODEL, 1, "prod")]
    assert owned[0].tags == spec.tags and ownership.FINGERPRINT not in owned[0].properties
    [listed] = emulator.calls(method="GET", path_contains="/models")
    assert listed.query["tags"] == [f"{ownership.MANAGED_BY}={ownership.MANAGED_BY_VALUE},"
                                    f"{ownership.ENVIRONMENT}=prod"]
    assert AzureMLModelRegistry(connection, "staging").list_owned()[0].name == "other-model"


def test_update_sets_description_and_tags_and_adds_properties(connection: WorkspaceConnection,
                                                              emulator: AzureEmulator, prod_env: Path) -> None:
    registry = AzureMLModelRegistry(connection, "prod")
    spec, fingerprint = _model_spec(prod_env)
    version = _register(registry, replace(spec, tags={"stage": "dev", "team": "a"}), fingerprint)
    wanted = replace(spec, description="better", tags={"stage": "prod"},
                     properties={**spec.properties, "dataset": "iris-v2"})
    emulator.reset_log()

    tags = {**wanted.tags, **ownership.ownership_tags("prod", MODEL, fingerprint)}
    registry.update(version, wanted.description, tags, {"dataset": "iris-v2"})
    updated = registry.version(MODEL, 1)

    stored = _server_model(connection, 1)
    assert stored.description == "better"
    assert ownership.user_tags(stored.tags) == {"stage": "prod"}  # "team" removed
    assert ownership.owner_of(stored.tags) == "prod"
    assert stored.properties == {**wanted.properties, ownership.FINGERPRINT: fingerprint}
    assert updated == replace(version, description="better", tags={"stage": "prod"}, properties=wanted.properties)
    assert registry.list_owned() == [updated]
    writes = [c.method for c in emulator.calls(host=r".*\.modelmanagement\.azureml\.net") if c.method != "GET"]
    assert writes == ["PATCH", "PATCH"]  # tags + description, then the new property


def test_update_clears_a_description_and_all_user_tags(connection: WorkspaceConnection, prod_env: Path) -> None:
    registry = AzureMLModelRegistry(connection, "prod")
    spec, fingerprint = _model_spec(prod_env)
    version = _register(registry, spec, fingerprint)

    registry.update(version, "", ownership.ownership_tags("prod", MODEL, fingerprint), {})

    stored = _server_model(connection, 1)
    assert stored.description == "" and ownership.user_tags(stored.tags) == {}
    assert ownership.owner_of(stored.tags) == "prod"  # ownership survives the replace


def test_update_refuses_to_change_a_property(connection: WorkspaceConnection, emulator: AzureEmulator,
                                             prod_env: Path) -> None:
    registry = AzureMLModelRegistry(connection, "prod")
    spec, fingerprint = _model_spec(prod_env)
    version = _register(registry, spec, fingerprint)
    emulator.reset_log()

    wanted = replace(spec, description="x", properties={"trainingScript": "other.py"})
    change = Change(ResourceKey(Kind.MODEL, MODEL), Action.UPDATE, "test", desired=DesiredModel(wanted, fingerprint),
                    actual=version)
    with pytest.raises(PermanentProviderError, match="add-only.*trainingScript.*a new version is needed"):
        _executor(connection, prod_env).apply(change)
    assert not emulator.calls(method="PATCH")


def test_update_refuses_an_unowned_version(connection: WorkspaceConnection, emulator: AzureEmulator,
                                           prod_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, fingerprint = _model_spec(prod_env)
    monkeypatch.chdir(spec.path.parent)
    from azureml.core.model import Model

    Model.register(connection.workspace, model_path=spec.path.name, model_name=MODEL, tags={"team": "data"})
    foreign = ModelVersion(MODEL, 1, None, "", {}, {}, owner=None)
    change = Change(ResourceKey(Kind.MODEL, MODEL), Action.UPDATE, "test", desired=DesiredModel(spec, fingerprint),
                    actual=foreign)
    emulator.reset_log()

    with pytest.raises(PermanentProviderError, match="owned by no environment .unmanaged., not 'prod'"):
        _executor(connection, prod_env).apply(change)
    assert not emulator.calls(method="PATCH")


def test_delete_all_deletes_only_owned_versions(connection: WorkspaceConnection, emulator: AzureEmulator,
                                                prod_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = AzureMLModelRegistry(connection, "prod")
    spec, fingerprint = _model_spec(prod_env)
    _register(registry, spec, fingerprint)
    _register(registry, spec, fingerprint)
    _register(AzureMLModelRegistry(connection, "staging"), spec, fingerprint)
    _register_unowned(connection, spec.path, monkeypatch)
    _register(registry, replace(spec, name="other-model"), fingerprint)

    registry.delete_owned(MODEL)
    registry.delete_owned(MODEL)  # idempotent

    workspace = arm.find_workspace(emulator.state, SUB, RG, WS)
    assert workspace is not None
    assert sorted(m.id for m in aml.models_in(emulator.state, workspace)) == \
        [f"{MODEL}:3", f"{MODEL}:4", "other-model:1"]


# --------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------


def _registered(connection: WorkspaceConnection, env: Path) -> ModelVersion:
    spec, fingerprint = _model_spec(env)
    return _register(AzureMLModelRegistry(connection, "prod"), spec, fingerprint)


def test_build_packages_the_iris_sample(connection: WorkspaceConnection, emulator: AzureEmulator,
                                       prod_env: Path) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    model = _registered(connection, prod_env)
    image = _image(prod_env, builder.registry)
    progress = RecordingProgress()

    started = time.monotonic()
    builder.build(image, [model], {}, progress)
    built = builder.get(IMAGE, image.label)

    assert time.monotonic() - started < FAST_S
    assert builder.registry == f"{REGISTRY}.azurecr.io"
    assert built is not None and (built.name, built.label, built.owner) == (IMAGE, image.label, "prod")
    assert built.reference == image.reference == f"{REGISTRY}.azurecr.io/{IMAGE}:{image.label}"
    assert progress.events == [("step", f"building image {IMAGE}:{image.label}")]
    [submitted] = aml.packages_submitted(emulator.state)
    assert submitted["modelIds"] == [f"{MODEL}:1"]
    assert (submitted["imageName"], submitted["imageLabel"], submitted["environment"]) == (IMAGE, image.label, IMAGE)
    assert any(f.endswith(".tar.gz") for f in submitted["files"])  # the source directory
    assert list(acr.list_tags(emulator.state, REGISTRY, IMAGE)) == [image.label]


def test_build_failure_carries_the_build_log(connection: WorkspaceConnection, emulator: AzureEmulator,
                                             prod_env: Path) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    model = _registered(connection, prod_env)
    image = _image(prod_env, builder.registry)
    aml.fail_next_package(emulator.state, "pip install exited with 1")

    with pytest.raises(PermanentProviderError) as failed:
        builder.build(image, [model], {}, RecordingProgress())

    message = str(failed.value)
    assert message.startswith(f"image/{IMAGE}:{image.label}: the image build ended Failed: ")
    assert "build log:\n" in message and "ERROR: pip install exited with 1" in message
    assert "sig=" not in message  # the log's SAS url stays out
    assert acr.list_tags(emulator.state, REGISTRY, IMAGE) == {}


def test_build_polls_and_reports_progress(connection: WorkspaceConnection, emulator: AzureEmulator,
                                          prod_env: Path) -> None:
    builder = AzureMLImageBuilder(connection, "prod", poll_interval=0)
    model = _registered(connection, prod_env)
    image = _image(prod_env, builder.registry)
    aml.set_package_progression(emulator.state, ["NotStarted", "Running", "Running"])
    progress = RecordingProgress()

    builder.build(image, [model], {}, progress)

    assert progress.events[1:] == [("advance", 1), ("advance", 2), ("advance", 3)]
    assert len(emulator.calls(method="GET", path_contains="/operations/")) == 4


def test_build_that_outlasts_the_limit_is_transient(connection: WorkspaceConnection, emulator: AzureEmulator,
                                                    prod_env: Path) -> None:
    builder = AzureMLImageBuilder(connection, "prod", poll_interval=0, timeout=0)
    model = _registered(connection, prod_env)
    image = _image(prod_env, builder.registry)
    aml.set_package_progression(emulator.state, ["Running"])

    with pytest.raises(TransientProviderError, match="still Running after 0 s"):
        builder.build(image, [model], {}, RecordingProgress())


def test_build_of_a_deleted_model_version_fails_without_registering(connection: WorkspaceConnection,
                                                                    emulator: AzureEmulator, prod_env: Path) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    model = _registered(connection, prod_env)
    AzureMLModelRegistry(connection, "prod").delete_owned(MODEL)
    emulator.reset_log()

    with pytest.raises(PermanentProviderError, match=f"model/{MODEL}:1"):
        builder.build(_image(prod_env, builder.registry), [model], {}, RecordingProgress())
    assert not emulator.calls(method="POST", path_contains="/models")  # no stray registration of a "path"


def test_build_without_source_directory_uploads_the_entry_script(connection: WorkspaceConnection,
                                                                 emulator: AzureEmulator, prod_env: Path) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    model = _registered(connection, prod_env)
    image = _image(prod_env, builder.registry)

    builder.build(replace(image, spec=replace(image.spec, source_directory=None)), [model], "prod",
                  RecordingProgress())

    [submitted] = aml.packages_submitted(emulator.state)
    assert "score.py" in submitted["files"] and not any(f.endswith(".tar.gz") for f in submitted["files"])


def test_build_with_a_broken_entry_script_fails_before_submitting(connection: WorkspaceConnection,
                                                                  emulator: AzureEmulator, prod_env: Path) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    model = _registered(connection, prod_env)
    image = _image(prod_env, builder.registry)
    image.spec.entry_script.write_text("def init(:\n")

    expected = rf"(?s)image/{IMAGE}:{image.label}: .*invalid syntax \(score\.py, line 1\)"
    with pytest.raises(PermanentProviderError, match=expected):
        builder.build(image, [model], {}, RecordingProgress())
    assert aml.packages_submitted(emulator.state) == []


def test_build_refuses_model_versions_its_label_does_not_stand_for(connection: WorkspaceConnection,
                                                                   emulator: AzureEmulator, prod_env: Path) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    model = _registered(connection, prod_env)
    image = _image(prod_env, builder.registry)

    with pytest.raises(ValueError, match="label stands for"):
        builder.build(image, [replace(model, fingerprint="0" * 64)], {}, RecordingProgress())
    assert aml.packages_submitted(emulator.state) == []


def test_list_owned_images_reads_label_tags(connection: WorkspaceConnection, emulator: AzureEmulator) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    for repository, tag in [(IMAGE, "0123456789ab"), (IMAGE, "ba9876543210"), (IMAGE, "latest"), (IMAGE, "v1"),
                            (IMAGE, "0123456789AB"), (IMAGE, "0123456789abc"), ("someone-else", "aaaaaaaaaaaa")]:
        acr.push_image(emulator.state, REGISTRY, repository, tag)

    images = builder.list_owned([IMAGE, "never-built"])

    assert [(i.name, i.label, i.owner, i.fingerprint) for i in images] == [
        (IMAGE, "0123456789ab", "prod", None), (IMAGE, "ba9876543210", "prod", None)]
    assert images[0].reference == f"{REGISTRY}.azurecr.io/{IMAGE}:0123456789ab"
    assert images[0].created.endswith("+00:00")


def test_throttled_registry_reads_are_retried(connection: WorkspaceConnection, emulator: AzureEmulator) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    acr.push_image(emulator.state, REGISTRY, IMAGE, "0123456789ab")
    throttle = emulator.faults.add(method="GET", path="/_tags$", status=429, retry_after=1, times=1)

    assert [i.label for i in builder.list_owned([IMAGE])] == ["0123456789ab"]
    assert throttle.injected == 1 and connection.retrier.stats.retries == 1  # ours: the client's are off


def test_delete_image_removes_only_its_tag(connection: WorkspaceConnection, emulator: AzureEmulator) -> None:
    builder = AzureMLImageBuilder(connection, "prod")
    for tag in ("0123456789ab", "ba9876543210", "latest"):
        acr.push_image(emulator.state, REGISTRY, IMAGE, tag)
    [old, _] = builder.list_owned([IMAGE])

    builder.delete(old)
    builder.delete(old)  # idempotent
    with pytest.raises(PermanentProviderError, match="left in place"):
        builder.delete(replace(old, label="latest"))
    builder.close()
    builder.close()

    assert sorted(acr.list_tags(emulator.state, REGISTRY, IMAGE)) == ["ba9876543210", "latest"]


# --------------------------------------------------------------------------------------------------------------
# Bounded reads
# --------------------------------------------------------------------------------------------------------------


def test_no_op_reads_make_a_bounded_number_of_calls(connection: WorkspaceConnection, emulator: AzureEmulator,
                                                    prod_env: Path) -> None:
    registry = AzureMLModelRegistry(connection, "prod")
    spec, fingerprint = _model_spec(prod_env)
    for name in ("a", "b", "c"):
        for _ in range(3):
            _register(registry, replace(spec, name=name), fingerprint)
    for repository in ("img-a", "img-b"):
        for n in range(5):
            acr.push_image(emulator.state, REGISTRY, repository, f"{n:012x}")

    fresh = WorkspaceConnection(SUB, RG, WS, connection.credential)
    emulator.reset_log()
    started = time.monotonic()
    assert len(AzureMLModelRegistry(fresh, "prod").list_owned()) == 9
    assert len(AzureMLImageBuilder(fresh, "prod").list_owned(["img-a", "img-b"])) == 10
    elapsed = time.monotonic() - started

    calls = [(c.method, c.host, c.path.rsplit("/", 1)[-1]) for c in emulator.calls()]
    mms = [c for c in calls if "modelmanagement" in c[1]]
    arm_calls = [c for c in calls if c[1] == "management.azure.com"]
    acr_calls = [c for c in calls if c[1].endswith(".azurecr.io")]
    assert mms == [("GET", "westeurope.modelmanagement.azureml.net", "models")]
    # Open the workspace (its registry id comes with it), then the registry for its login server.
    assert [c[2] for c in arm_calls] == [WS, REGISTRY]  # no GET /subscriptions (_one_subscription_auth)
    # One token for both repositories, then one listing each (in a pool: in any order).
    assert sorted(c[2] for c in acr_calls) == ["_tags", "_tags", "exchange", "token"]
    token = emulator.log.requests("POST", path_contains="/oauth2/token")[0]
    assert b"scope=repository%3Aimg-a%3Ametadata_read+repository%3Aimg-b%3Ametadata_read" in token.body
    assert fresh.retrier.stats.http["acr"] == len(acr_calls)
    assert not [c for c in calls if c[2] == "endpoints"]  # the cloud is named: no cloud metadata fetch
    others = [c for c in calls if c not in mms + arm_calls + acr_calls]
    assert len(others) <= 3  # AAD (discovery and a token per audience, cached by the credential), discovery
    assert elapsed < FAST_S


def test_a_workspace_in_a_subscription_out_of_reach_fails_with_arms_answer(connection: WorkspaceConnection,
                                                                             emulator: AzureEmulator) -> None:
    """azureml's subscription check (``GET /subscriptions``) is not made; the workspace read that follows is
    refused by ARM itself, and that answer reaches the user, naming the workspace."""
    elsewhere = WorkspaceConnection("11111111-2222-3333-4444-555555555555", RG, WS, connection.credential)
    emulator.reset_log()
    with pytest.raises(PermanentProviderError) as raised:
        elsewhere.registry_id  # noqa: B018
    assert str(raised.value).startswith(f"workspace {WS}: HTTP 404 ResourceNotFound: ")  # before: azureml's own
    assert str(raised.value).endswith("check the names in environment.yaml (subscription, resource groups, "
                                      "workspace, registry, IoT Hub host name), or run `reconciler plan` again "
                                      "if it was just deleted")  # before: "unexpected error from the Azure SDK"
    assert [c.path.rsplit("/", 1)[-1] for c in emulator.calls(host="management.azure.com")] == [WS]


# --------------------------------------------------------------------------------------------------------------
# Import hygiene
# --------------------------------------------------------------------------------------------------------------


def test_validate_and_the_adapter_modules_do_not_import_azureml() -> None:
    script = (
        "import sys\n"
        "import reconciler.cli.main as cli\n"
        "import reconciler.providers.azure.ml, reconciler.providers.azure.ml_api\n"
        "for env in ('environments/local', 'environments/prod'):\n"
        "    assert cli.main(['validate', env]) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'azureml')\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
