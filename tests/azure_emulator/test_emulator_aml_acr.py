"""The AML, ARM and ACR emulator modules driven by the real, unpatched SDKs through ``server.AzureEmulator``.

azureml-core 1.61, azure-mgmt-containerregistry 14, azure-containerregistry and azure-identity reach the
emulator through ``HTTPS_PROXY`` + ``REQUESTS_CA_BUNDLE``; ``HOME`` is a temporary directory set before azureml
is first imported (it caches discovery results under ``~/.azureml``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from . import acr, aml, arm
from .server import AzureEmulator
from .testing import isolated_home

SUB = "00000000-0000-4000-8000-0000000000a1"
RG = "rg-edge"
WS = "ws-edge"
REGISTRY = "emuacr"
TENANT = arm.DEFAULT_TENANT
MMS = f"https://westeurope.modelmanagement.azureml.net/modelmanagement/v1.0/subscriptions/{SUB}/resourceGroups/{RG}" \
      f"/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
FAST_S = 3.0  # any single SDK operation below must finish well within this


# --------------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """azureml and friends, imported with ``HOME`` pointing at a fresh directory."""
    with isolated_home(tmp_path_factory.mktemp("home")) as home:
        modules = {name: importlib.import_module(name) for name in (
            "azureml.core", "azureml.core.model", "azureml.core.environment", "azureml.exceptions",
            "azureml.core.authentication",
        )}
        from .auth import StaticTokenAuthentication, StaticTokenCredential

        yield SimpleNamespace(
            Workspace=modules["azureml.core"].Workspace,
            Model=modules["azureml.core.model"].Model,
            InferenceConfig=modules["azureml.core.model"].InferenceConfig,
            Environment=modules["azureml.core.environment"].Environment,
            WebserviceException=modules["azureml.exceptions"].WebserviceException,
            ServicePrincipalAuthentication=modules["azureml.core.authentication"].ServicePrincipalAuthentication,
            StaticTokenAuthentication=StaticTokenAuthentication,
            StaticTokenCredential=StaticTokenCredential,
            home=home,
        )


@pytest.fixture(scope="module")
def running(sdk: SimpleNamespace) -> Iterator[AzureEmulator]:
    with AzureEmulator() as emulator, emulator.environ():
        yield emulator


@pytest.fixture
def emulator(running: AzureEmulator) -> Iterator[AzureEmulator]:
    """A running emulator with fresh state: one workspace whose registry has its admin user enabled."""
    running.reset()
    arm.add_workspace(running.state, SUB, RG, WS, registry_name=REGISTRY)
    yield running
    assert running.errors == [], running.errors[0] if running.errors else ""
    assert running.unmatched == [], [f"{r.method} {r.host}{r.path}" for r in running.unmatched]


@pytest.fixture
def ws(sdk: SimpleNamespace, emulator: AzureEmulator) -> Any:
    return sdk.Workspace(SUB, RG, WS, auth=sdk.StaticTokenAuthentication([SUB]))


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd with a model file, an entry script and a conda file (azureml refuses paths outside the cwd)."""
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04model-bytes")
    (tmp_path / "score.py").write_text("def init():\n    pass\n\n\ndef run(data):\n    return data\n")
    (tmp_path / "conda.yml").write_text(
        "name: demo\ndependencies:\n  - python=3.10\n  - pip:\n    - azureml-defaults\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _register(sdk: SimpleNamespace, ws: Any, name: str = "demo-model", **kwargs: Any) -> Any:
    return sdk.Model.register(ws, model_path="model.pkl", model_name=name, **kwargs)


def _mms_get(path: str, **params: str) -> requests.Response:
    token = arm.access_token("https://management.azure.com", TENANT, "tests")
    return requests.get(f"{MMS}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10)


# --------------------------------------------------------------------------------------------------------------
# Workspace and auth
# --------------------------------------------------------------------------------------------------------------


def test_workspace_is_read_from_arm(sdk: SimpleNamespace, emulator: AzureEmulator) -> None:
    ws = sdk.Workspace(SUB, RG, WS, auth=sdk.StaticTokenAuthentication([SUB]))

    assert (ws.name, ws.location, ws.resource_group) == (WS, "westeurope", RG)
    assert ws.discovery_url == "https://westeurope.api.azureml.ms/discovery"
    [call] = emulator.calls(host="management.azure.com")
    assert call.method == "GET" and call.path.endswith(f"/workspaces/{WS}")
    assert call.query["api-version"] == ["2022-05-01"]


def test_unknown_workspace_is_an_error(sdk: SimpleNamespace, emulator: AzureEmulator) -> None:
    with pytest.raises(Exception, match="(?i)not found|does not exist|ResourceNotFound"):
        sdk.Workspace(SUB, RG, "missing", auth=sdk.StaticTokenAuthentication([SUB]))


def test_client_secret_credential_gets_a_token(emulator: AzureEmulator) -> None:
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential(TENANT, "app-id", "app-secret")
    token = credential.get_token("https://management.azure.com/.default")

    claims = arm.decode_jwt(token.token)
    assert claims is not None and claims["aud"] == "https://management.azure.com" and claims["appid"] == "app-id"
    assert token.expires_on > time.time() + 3000
    assert emulator.calls(method="POST", host="login.microsoftonline.com", path_contains="/oauth2/v2.0/token")


def test_seeded_clients_reject_a_wrong_secret(emulator: AzureEmulator) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    emulator.state.service("aad")["clients"] = {"app-id": "right"}
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        ClientSecretCredential(TENANT, "app-id", "wrong").get_token("https://management.azure.com/.default")


def test_service_principal_authentication_reaches_the_workspace(sdk: SimpleNamespace, emulator: AzureEmulator) -> None:
    auth = sdk.ServicePrincipalAuthentication(tenant_id=TENANT, service_principal_id="app-id",
                                              service_principal_password="app-secret")
    ws = sdk.Workspace(SUB, RG, WS, auth=auth)

    assert ws.name == WS
    assert emulator.calls(method="GET", host="management.azure.com", path_contains="/subscriptions")
    assert emulator.calls(method="POST", host="login.microsoftonline.com")


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


def test_register_uploads_and_counts_versions(sdk: SimpleNamespace, ws: Any, emulator: AzureEmulator,
                                              model_dir: Path) -> None:
    emulator.reset_log()
    first = _register(sdk, ws, tags={"stage": "dev"}, properties={"git_sha": "abc"}, description="first")
    second = _register(sdk, ws, tags={"stage": "prod"}, description="second")

    assert (first.id, first.version, second.id, second.version) == ("demo-model:1", 1, "demo-model:2", 2)
    assert first.tags == {"stage": "dev"} and first.properties == {"git_sha": "abc"}
    assert first.description == "first"
    sequence = [(c.method, c.host.split(".")[1]) for c in emulator.calls()]
    assert sequence[:6] == [
        ("GET", "api"),  # discovery, once per workspace
        ("POST", "experiments"),  # artifact batch -> SAS url
        ("PUT", "blob"), ("HEAD", "blob"),
        ("POST", "modelmanagement"),  # assets
        ("POST", "modelmanagement"),  # models
    ]
    blobs = emulator.state.service("aml")["blobs"]
    assert any(key[2].endswith("/model.pkl") and blob.data == b"\x80\x04model-bytes" for key, blob in blobs.items())
    assert not any(r.headers.get("authorization") for r in emulator.log.requests(host=r"westeurope\.api\.azureml\.ms"))


def test_model_download_lists_the_asset_prefix_and_reads_each_blob(sdk: SimpleNamespace, ws: Any,
                                                                   emulator: AzureEmulator, model_dir: Path) -> None:
    first, second = _register(sdk, ws), _register(sdk, ws, "other-model")
    (model_dir / "model.pkl").write_bytes(b"changed")  # what was uploaded is downloaded, not the file now
    emulator.reset_log()
    target = model_dir / "downloaded"
    path = first.download(target_dir=str(target))

    assert Path(path) == target / "model.pkl" and Path(path).read_bytes() == b"\x80\x04model-bytes"
    assert [p.name for p in target.iterdir()] == ["model.pkl"]  # nothing of the other model's prefix
    calls = emulator.calls()
    assert [(c.method, c.host.split(".")[1]) for c in calls] == [
        ("GET", "modelmanagement"),  # the model's asset
        ("GET", "experiments"),  # the asset's artifact prefix -> read SAS urls
        ("GET", "blob"),  # one per file
    ]
    assert "/assets/" in calls[0].path
    assert "/artifacts/prefix/contentinfo/LocalUpload/" in calls[1].path and calls[1].path.endswith("/model.pkl")
    assert second.version == 1


def test_get_by_version_and_latest(sdk: SimpleNamespace, ws: Any, model_dir: Path) -> None:
    for _ in range(3):
        _register(sdk, ws)

    assert sdk.Model(ws, name="demo-model", version=2).id == "demo-model:2"
    assert sdk.Model(ws, name="demo-model").version == 3
    assert sdk.Model(ws, id="demo-model:1").version == 1
    with pytest.raises(sdk.WebserviceException, match="ModelNotFound"):
        sdk.Model(ws, name="demo-model", version=9)


def test_list_filters_by_name_tags_and_latest(sdk: SimpleNamespace, ws: Any, model_dir: Path) -> None:
    _register(sdk, ws, "a", tags={"stage": "dev", "team": "x"})
    _register(sdk, ws, "a", tags={"stage": "prod", "team": "x"})
    _register(sdk, ws, "b", tags={"stage": "prod"})

    def ids(**kwargs: Any) -> list[str]:
        return sorted(m.id for m in sdk.Model.list(ws, expand=False, **kwargs))

    assert ids() == ["a:1", "a:2", "b:1"]
    assert ids(tags=[["stage", "prod"]]) == ["a:2", "b:1"]
    assert ids(tags=[["stage", "prod"], "team"]) == ["a:2"]
    assert ids(tags=[["stage", "qa"]]) == []
    assert ids(name="a") == ["a:1", "a:2"]
    assert ids(latest=True) == ["a:2", "b:1"]


def test_list_pages_with_skip_token(sdk: SimpleNamespace, ws: Any, model_dir: Path) -> None:
    for _ in range(5):
        _register(sdk, ws)

    first = _mms_get("/models", name="demo-model", count="2").json()
    assert [m["version"] for m in first["value"]] == [5, 4]  # newest first without orderBy
    second = requests.get(first["nextLink"], headers={"Authorization": _mms_get_auth()}, timeout=10).json()
    assert [m["version"] for m in second["value"]] == [3, 2]
    assert "$skipToken=4" in second["nextLink"] and "name=demo-model" in second["nextLink"]
    oldest = _mms_get("/models", name="demo-model", count="2", orderBy="CreatedAtAsc").json()
    assert [m["version"] for m in oldest["value"]] == [1, 2]


def _mms_get_auth() -> str:
    return "Bearer " + arm.access_token("https://management.azure.com", TENANT, "tests")


def test_update_tags_and_delete(sdk: SimpleNamespace, ws: Any, model_dir: Path) -> None:
    model = _register(sdk, ws, tags={"stage": "dev"}, properties={"git_sha": "abc"})

    model.update(description="better")
    model.add_tags({"owner": "gitops"})
    model.remove_tags(["stage"])
    model.add_properties({"build": "7"})

    fresh = sdk.Model(ws, id=model.id)
    assert fresh.description == "better"
    assert fresh.tags == {"owner": "gitops"}
    assert fresh.properties == {"git_sha": "abc", "build": "7"}

    model.delete()
    with pytest.raises(sdk.WebserviceException, match="ModelNotFound"):
        sdk.Model(ws, id=model.id)
    assert _register(sdk, ws).version == 2  # versions are not reused


def test_bad_patches_are_rejected(sdk: SimpleNamespace, ws: Any, model_dir: Path) -> None:
    model = _register(sdk, ws, properties={"git_sha": "abc"})
    url = f"{MMS}/models/{model.name}%3A{model.version}"
    headers = {"Authorization": _mms_get_auth(), "Content-Type": "application/json-patch+json"}

    def patch(body: Any) -> requests.Response:
        return requests.patch(url, json=body, headers=headers, timeout=10)

    assert patch([{"op": "add", "path": "/properties", "value": {"git_sha": "changed"}}]).status_code == 400
    assert patch([{"op": "replace", "path": "/name", "value": "x"}]).status_code == 400
    assert patch([{"op": "move", "path": "/kvTags", "value": {}}]).status_code == 400
    assert patch({"op": "replace"}).status_code == 400
    ok = patch([{"op": "add", "path": "/kvTags/k", "value": "v"}])
    assert ok.status_code == 200 and ok.json()["kvTags"] == {"k": "v"}
    missing = requests.patch(f"{MMS}/models/nope%3A1", json=[], headers=headers, timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "ModelNotFound"


# --------------------------------------------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------------------------------------------


def _inference_config(sdk: SimpleNamespace) -> Any:
    env = sdk.Environment.from_conda_specification(name="demo-env", file_path="conda.yml")
    return sdk.InferenceConfig(entry_script="score.py", environment=env)


def test_package_builds_an_image_into_the_registry(sdk: SimpleNamespace, ws: Any, emulator: AzureEmulator,
                                                   model_dir: Path) -> None:
    model = _register(sdk, ws)

    started = time.monotonic()
    package = sdk.Model.package(ws, [model], _inference_config(sdk), image_name="demo-image", image_label="v1")
    package.wait_for_creation()
    elapsed = time.monotonic() - started

    assert package.state == "Succeeded" and elapsed < FAST_S
    assert package.location == f"{REGISTRY}.azurecr.io/demo-image:v1"
    assert "v1" in acr.list_tags(emulator.state, REGISTRY, "demo-image")
    [submitted] = aml.packages_submitted(emulator.state)
    assert submitted["modelIds"] == ["demo-model:1"] and "score.py" in submitted["files"]
    assert submitted["driverProgram"] in submitted["files"] and submitted["environment"] == "demo-env"
    assert "Pushed" in package.get_logs()

    registry = package.get_container_registry()  # POST {ws}/listKeys on the hard-coded ARM host
    assert registry.address == f"{REGISTRY}.azurecr.io" and registry.username == REGISTRY
    assert registry.password == acr.find_registry(emulator.state, REGISTRY).passwords["password"]


def test_failed_package_reports_the_log(sdk: SimpleNamespace, ws: Any, emulator: AzureEmulator,
                                        model_dir: Path) -> None:
    model = _register(sdk, ws)
    aml.fail_next_package(emulator.state, "pip install exited with 1")

    package = sdk.Model.package(ws, [model], _inference_config(sdk), image_name="demo-image", image_label="v2")
    with pytest.raises(sdk.WebserviceException, match="pip install exited with 1"):
        package.wait_for_creation()
    assert package.state == "Failed"
    assert "ERROR: pip install exited with 1" in package.get_logs()
    assert acr.list_tags(emulator.state, REGISTRY, "demo-image") == {}


def test_package_progresses_through_states(sdk: SimpleNamespace, ws: Any, emulator: AzureEmulator,
                                           model_dir: Path) -> None:
    model = _register(sdk, ws)
    aml.set_package_progression(emulator.state, ["NotStarted", "Running"])

    package = sdk.Model.package(ws, [model], _inference_config(sdk), image_name="demo-image", image_label="v3")
    seen = [package.state]
    for _ in range(2):  # polled by hand: wait_for_creation would sleep 5 s per step
        package.update_creation_state()
        seen.append(package.state)

    assert seen == ["NotStarted", "Running", "Succeeded"]
    assert package.location == f"{REGISTRY}.azurecr.io/demo-image:v3"


def test_package_of_unknown_model_is_rejected(sdk: SimpleNamespace, ws: Any, model_dir: Path) -> None:
    model = _register(sdk, ws)
    model.delete()
    with pytest.raises(sdk.WebserviceException, match="404"):
        sdk.Model.package(ws, [model], _inference_config(sdk), image_name="demo-image", image_label="v4")


def test_list_keys_without_admin_user(sdk: SimpleNamespace, ws: Any, emulator: AzureEmulator,
                                      model_dir: Path) -> None:
    acr.find_registry(emulator.state, REGISTRY).admin_user_enabled = False
    package = sdk.Model.package(ws, [_register(sdk, ws)], _inference_config(sdk), image_name="x-image",
                                image_label="v1")
    with pytest.raises(sdk.WebserviceException, match="container registry credentials"):
        package.get_container_registry()


# --------------------------------------------------------------------------------------------------------------
# ACR management plane
# --------------------------------------------------------------------------------------------------------------


def _acr_mgmt(sdk: SimpleNamespace) -> Any:
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    return ContainerRegistryManagementClient(sdk.StaticTokenCredential(), SUB)


@pytest.mark.parametrize("lro", ["async", "sync"])
def test_registry_admin_credentials(sdk: SimpleNamespace, emulator: AzureEmulator, lro: str) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.containerregistry.models import RegenerateCredentialParameters, RegistryUpdateParameters

    acr.set_lro_mode(emulator.state, lro)
    acr.add_registry(emulator.state, SUB, RG, "plainacr")
    client = _acr_mgmt(sdk)

    registry = client.registries.get(RG, "plainacr")
    assert (registry.login_server, registry.admin_user_enabled) == ("plainacr.azurecr.io", False)
    with pytest.raises(HttpResponseError) as refused:
        client.registries.list_credentials(RG, "plainacr")
    assert refused.value.status_code == 400

    started = time.monotonic()
    updated = client.registries.begin_update(RG, "plainacr", RegistryUpdateParameters(admin_user_enabled=True)).result()
    assert updated.admin_user_enabled and time.monotonic() - started < FAST_S

    credentials = client.registries.list_credentials(RG, "plainacr")
    assert credentials.username == "plainacr" and [p.name for p in credentials.passwords] == ["password", "password2"]
    regenerated = client.registries.regenerate_credential(RG, "plainacr",
                                                          RegenerateCredentialParameters(name="password"))
    assert regenerated.passwords[0].value != credentials.passwords[0].value
    assert regenerated.passwords[1].value == credentials.passwords[1].value


@pytest.mark.parametrize("lro", ["async", "sync"])
def test_import_image_copies_the_manifest_and_blobs_between_registries(sdk: SimpleNamespace, emulator: AzureEmulator,
                                                                       lro: str) -> None:
    """``Registries_ImportImage`` by digest into another registry: the same manifest bytes, the blobs it names,
    the target tag; a second import onto that tag fails with ``NoForce`` and succeeds with ``Force``."""
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.containerregistry.models import ImportImageParameters, ImportSource

    acr.set_lro_mode(emulator.state, lro)
    source = acr.add_registry(emulator.state, SUB, "rg-dev", "devacr01")
    acr.add_registry(emulator.state, SUB, RG, "prodacr01")
    pushed = acr.push_image(emulator.state, "devacr01", "iris-scorer", "0123456789ab")
    client = _acr_mgmt(sdk)
    parameters = ImportImageParameters(
        source=ImportSource(resource_id=source.arm_id, source_image=f"iris-scorer@{pushed.digest}"),
        target_tags=["iris-scorer:0123456789ab"], mode="NoForce")

    started = time.monotonic()
    client.registries.begin_import_image(RG, "prodacr01", parameters).result()
    assert time.monotonic() - started < FAST_S
    imported = acr.list_tags(emulator.state, "prodacr01", "iris-scorer")["0123456789ab"]
    assert imported.digest == pushed.digest
    assert acr.image_content(emulator.state, "prodacr01", pushed.digest) == acr.image_content(
        emulator.state, "devacr01", pushed.digest)
    manifest, blobs = acr.image_content(emulator.state, "prodacr01", pushed.digest) or (b"", {})
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == pushed.digest and len(blobs) == 2
    statuses = [c.status for c in emulator.calls("POST", path_contains="/importImage")]
    assert statuses == [202 if lro == "async" else 200]

    with pytest.raises(HttpResponseError) as refused:  # NoForce: the tag exists
        client.registries.begin_import_image(RG, "prodacr01", parameters).result()
    assert (refused.value.status_code, refused.value.error.code) == (400, "InvalidParameters")
    parameters.mode = "Force"
    client.registries.begin_import_image(RG, "prodacr01", parameters).result()

    missing = ImportImageParameters(source=ImportSource(resource_id=source.arm_id, source_image="iris-scorer:nope"),
                                    target_tags=["iris-scorer:nope"])
    with pytest.raises(HttpResponseError) as refused:
        client.registries.begin_import_image(RG, "prodacr01", missing).result()
    assert refused.value.error.code == "InvalidParameters"
    assert "Source image devacr01.azurecr.io/iris-scorer:nope not found" in refused.value.error.message
    nowhere = ImportImageParameters(source=ImportSource(resource_id=source.arm_id.replace("devacr01", "gone01"),
                                                        source_image="iris-scorer:0123456789ab"),
                                    target_tags=["iris-scorer:x"])
    with pytest.raises(HttpResponseError) as refused:
        client.registries.begin_import_image(RG, "prodacr01", nowhere).result()
    assert "source registry" in refused.value.error.message and "not found" in refused.value.error.message


def test_unknown_registry_is_not_found(sdk: SimpleNamespace, emulator: AzureEmulator) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        _acr_mgmt(sdk).registries.get(RG, "nosuchacr")
    with pytest.raises(ResourceNotFoundError):
        _acr_mgmt(sdk).registries.get("other-rg", REGISTRY)


@pytest.mark.parametrize("lro", ["async", "sync"])
def test_scope_map_token_and_generated_password(sdk: SimpleNamespace, emulator: AzureEmulator, lro: str) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.containerregistry.models import GenerateCredentialsParameters, ScopeMap, Token

    acr.set_lro_mode(emulator.state, lro)
    acr.push_image(emulator.state, REGISTRY, "models/demo", "v1")
    acr.push_image(emulator.state, REGISTRY, "other", "v1")
    client = _acr_mgmt(sdk)
    actions = ["repositories/models/demo/content/read", "repositories/models/demo/metadata/read"]

    started = time.monotonic()
    scope_map = client.scope_maps.begin_create(RG, REGISTRY, "edge-pull", ScopeMap(actions=actions)).result()
    token = client.tokens.begin_create(RG, REGISTRY, "edge-site-1",
                                       Token(scope_map_id=scope_map.id, status="enabled")).result()
    generated = client.registries.begin_generate_credentials(
        RG, REGISTRY, GenerateCredentialsParameters(token_id=token.id, name="password1")).result()
    assert time.monotonic() - started < FAST_S

    assert scope_map.actions == actions and token.scope_map_id == scope_map.id and token.status == "enabled"
    assert generated.username == "edge-site-1" and [p.name for p in generated.passwords] == ["password1"]
    listed = client.tokens.get(RG, REGISTRY, "edge-site-1")
    assert [p.name for p in listed.credentials.passwords] == ["password1"]
    assert listed.credentials.passwords[0].value is None  # shown only at generation

    # The token's password reads exactly what its scope map allows (Docker Registry v2, basic auth).
    basic = "Basic " + base64.b64encode(f"edge-site-1:{generated.passwords[0].value}".encode()).decode()
    allowed = requests.get(f"https://{REGISTRY}.azurecr.io/v2/models/demo/tags/list",
                           headers={"Authorization": basic}, timeout=10)
    assert allowed.status_code == 200 and allowed.json() == {"name": "models/demo", "tags": ["v1"]}
    denied = requests.get(f"https://{REGISTRY}.azurecr.io/v2/other/tags/list",
                          headers={"Authorization": basic}, timeout=10)
    assert denied.status_code == 401 and 'scope="repository:other:pull"' in denied.headers["WWW-Authenticate"]

    with pytest.raises(HttpResponseError) as in_use:
        client.scope_maps.begin_delete(RG, REGISTRY, "edge-pull").result()
    assert in_use.value.status_code == 409
    client.tokens.begin_delete(RG, REGISTRY, "edge-site-1").result()
    client.scope_maps.begin_delete(RG, REGISTRY, "edge-pull").result()
    assert [t.name for t in client.tokens.list(RG, REGISTRY)] == []
    assert "edge-pull" not in [s.name for s in client.scope_maps.list(RG, REGISTRY)]


def test_invalid_scope_map_and_token_are_rejected(sdk: SimpleNamespace, emulator: AzureEmulator) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.containerregistry.models import ScopeMap, Token

    client = _acr_mgmt(sdk)
    with pytest.raises(HttpResponseError) as bad_action:
        client.scope_maps.begin_create(RG, REGISTRY, "bad", ScopeMap(actions=["repositories/x/pull"])).result()
    assert bad_action.value.status_code == 400
    missing = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerRegistry/registries/" \
              f"{REGISTRY}/scopeMaps/nope"
    with pytest.raises(HttpResponseError) as bad_map:
        client.tokens.begin_create(RG, REGISTRY, "t", Token(scope_map_id=missing)).result()
    assert bad_map.value.status_code == 400


# --------------------------------------------------------------------------------------------------------------
# ACR data plane
# --------------------------------------------------------------------------------------------------------------


def _registry_client_class() -> Any:
    """azure-containerregistry is not (yet) a project dependency: skip, visibly, where it is missing."""
    return pytest.importorskip("azure.containerregistry", reason="pip install azure-containerregistry") \
        .ContainerRegistryClient


def test_registry_client_lists_tags_with_aad_exchange(emulator: AzureEmulator) -> None:
    ContainerRegistryClient = _registry_client_class()
    from azure.identity import ClientSecretCredential

    for tag in ("v1", "v2", "v3"):
        acr.push_image(emulator.state, REGISTRY, "demo-image", tag)
    emulator.reset_log()
    client = ContainerRegistryClient(f"https://{REGISTRY}.azurecr.io", ClientSecretCredential(TENANT, "app", "secret"))

    assert sorted(t.name for t in client.list_tag_properties("demo-image", results_per_page=2)) == ["v1", "v2", "v3"]
    assert list(client.list_repository_names()) == ["demo-image"]
    tag = client.get_tag_properties("demo-image", "v2")
    assert tag.digest == acr.list_tags(emulator.state, REGISTRY, "demo-image")["v2"].digest
    client.delete_tag("demo-image", "v1")
    assert sorted(t.name for t in client.list_tag_properties("demo-image")) == ["v2", "v3"]

    exchange = emulator.log.requests(method="POST", path_contains="/oauth2/exchange")
    assert exchange and "grant_type=access_token" in exchange[0].body.decode()
    statuses = [c.status for c in emulator.calls(host=f"{REGISTRY}.azurecr.io", path_contains="/acr/v1/")]
    assert 401 in statuses and 200 in statuses  # the challenge, then the retried call


def test_registry_client_sees_an_image_built_by_a_package(sdk: SimpleNamespace, ws: Any, emulator: AzureEmulator,
                                                          model_dir: Path) -> None:
    ContainerRegistryClient = _registry_client_class()

    model = _register(sdk, ws)
    sdk.Model.package(ws, [model], _inference_config(sdk), image_name="demo-image", image_label="v7") \
        .wait_for_creation()

    client = ContainerRegistryClient(f"https://{REGISTRY}.azurecr.io", sdk.StaticTokenCredential())
    assert [t.name for t in client.list_tag_properties("demo-image")] == ["v7"]


def test_registry_client_anonymous_and_unknown_repository(emulator: AzureEmulator) -> None:
    ContainerRegistryClient = _registry_client_class()
    from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
    from azure.identity import ClientSecretCredential

    acr.push_image(emulator.state, REGISTRY, "demo-image", "v1")
    with pytest.raises(ClientAuthenticationError):
        list(ContainerRegistryClient(f"https://{REGISTRY}.azurecr.io", None).list_tag_properties("demo-image"))
    acr.find_registry(emulator.state, REGISTRY).anonymous_pull_enabled = True
    anonymous = ContainerRegistryClient(f"https://{REGISTRY}.azurecr.io", None)
    assert [t.name for t in anonymous.list_tag_properties("demo-image")] == ["v1"]

    client = ContainerRegistryClient(f"https://{REGISTRY}.azurecr.io", ClientSecretCredential(TENANT, "app", "s"))
    with pytest.raises(ResourceNotFoundError):
        list(client.list_tag_properties("nope"))


def test_docker_v2_with_admin_credentials(emulator: AzureEmulator) -> None:
    registry = acr.find_registry(emulator.state, REGISTRY)
    acr.push_image(emulator.state, REGISTRY, "demo-image", "v1")
    basic = "Basic " + base64.b64encode(f"{REGISTRY}:{registry.passwords['password2']}".encode()).decode()
    base = f"https://{REGISTRY}.azurecr.io"

    assert requests.get(f"{base}/v2/", timeout=10).status_code == 401
    assert requests.get(f"{base}/v2/", headers={"Authorization": basic}, timeout=10).status_code == 200
    token = requests.get(f"{base}/oauth2/token", params={"service": f"{REGISTRY}.azurecr.io",
                                                         "scope": "repository:demo-image:pull"},
                         headers={"Authorization": basic}, timeout=10).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{base}/v2/demo-image/tags/list", headers=bearer, timeout=10).json()["tags"] == ["v1"]
    head = requests.head(f"{base}/v2/demo-image/manifests/v1", headers=bearer, timeout=10)
    assert head.status_code == 200 and head.headers["Docker-Content-Digest"].startswith("sha256:")
    assert requests.get(f"{base}/v2/demo-image/manifests/v9", headers=bearer, timeout=10).status_code == 404


# --------------------------------------------------------------------------------------------------------------
# Injected faults in each service's shape
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    (f"https://{REGISTRY}.azurecr.io/acr/v1/_catalog",
     {"errors": [{"code": "TOOMANYREQUESTS", "message": "Injected fault (429)", "detail": None}]}),
    (f"https://management.azure.com/subscriptions/{SUB}?api-version=2022-12-01",
     {"error": {"code": "TooManyRequests", "message": "Injected fault (429)"}}),
])
def test_injected_faults_have_the_shape_of_the_service(emulator: AzureEmulator, url: str,
                                                       expected: dict[str, Any]) -> None:
    emulator.faults.throttle(retry_after=2, times=1)
    answer = requests.get(url)
    assert (answer.status_code, answer.headers["Retry-After"], answer.json()) == (429, "2", expected)
    assert "iothub-errorcode" not in answer.headers


def test_injected_faults_on_model_management_are_model_error_responses(emulator: AzureEmulator) -> None:
    emulator.faults.add(host=r".*\.modelmanagement\.azureml\.net", status=503, times=1)
    answer = requests.get(f"https://westeurope.modelmanagement.azureml.net/modelmanagement/v1.0/subscriptions/{SUB}")
    body = answer.json()
    assert answer.status_code == 503 and (body["code"], body["statusCode"]) == ("ServiceUnavailable", 503)
    assert {"message", "details"} <= set(body) and "error" not in body


# --------------------------------------------------------------------------------------------------------------
# Blob reads with a Microsoft Entra ID token (model sources outside git)
# --------------------------------------------------------------------------------------------------------------


def test_blob_read_with_an_entra_id_token_needs_the_storage_audience_and_a_recent_version(
        emulator: AzureEmulator) -> None:
    aml.put_blob_object(emulator.state, ("contosomodels", "models", "iris/model.onnx"), b"weights")
    url = "https://contosomodels.blob.core.windows.net/models/iris/model.onnx"

    def get(audience: str, version: str) -> requests.Response:
        token = arm.access_token(audience, TENANT, "tests")
        return requests.get(url, headers={"Authorization": f"Bearer {token}", "x-ms-version": version}, timeout=10)

    read = get("https://storage.azure.com", "2021-08-06")
    assert (read.status_code, read.content) == (200, b"weights")
    wrong_audience = get("https://management.azure.com", "2021-08-06")
    assert (wrong_audience.status_code, wrong_audience.headers["x-ms-error-code"]) == (401, "InvalidAuthenticationInfo")
    assert get("https://storage.azure.com", "2017-04-17").status_code == 400
    unsigned = requests.get(url, timeout=10)  # neither a SAS nor a token
    assert (unsigned.status_code, unsigned.headers["x-ms-error-code"]) == (403, "AuthenticationFailed")
