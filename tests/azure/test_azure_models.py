"""The model registry on both Azure ML SDKs, the same assertions for each: azureml-core (``ml.py``, v1) and
azure-ai-ml (``ml_v2.py``, v2) against the emulator, unpatched SDKs. The server side is read from the
emulator's one model store, which both SDKs' routes share (as Azure ML has one registry per workspace)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.errors import ProviderError
from reconciler.model import ownership
from reconciler.model.specs import ModelSpec
from reconciler.model.state import ModelVersion
from reconciler.providers.azure.ml_api import ModelRegistry
from reconciler.providers.base import SilentProgress
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.azure.ml_fixtures import RG, SUB, WS
from tests.azure_emulator import aml, arm
from tests.azure_emulator.server import AzureEmulator

pytest_plugins = ["tests.azure.ml_fixtures"]

MODEL = "iris-classifier"
SDKS = ["v1", "v2"]
Registries = Callable[[str], ModelRegistry]


@pytest.fixture(params=SDKS)
def sdk(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def registries(sdk: str, emulator: AzureEmulator) -> Registries:
    """environment name -> that environment's model registry on ``sdk``, all on one credential."""
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    return lambda environment: open_registry(sdk, environment, credential)


def open_registry(sdk: str, environment: str, credential: object) -> ModelRegistry:
    if sdk == "v1":
        from reconciler.providers.azure.ml import AzureMLModelRegistry, WorkspaceConnection

        return AzureMLModelRegistry(WorkspaceConnection(SUB, RG, WS, credential), environment)  # type: ignore[arg-type]
    from reconciler.providers.azure.ml_v2 import MLClientConnection, MLClientModelRegistry

    return MLClientModelRegistry(MLClientConnection(SUB, RG, WS, credential), environment)  # type: ignore[arg-type]


def _model_spec(env: Path) -> tuple[ModelSpec, str]:
    state = load_environment(env)
    return state.models[MODEL], compute_fingerprints(state, HashCache()).models[MODEL]


def _register(registry: ModelRegistry, spec: ModelSpec, fingerprint: str, environment: str = "prod") -> ModelVersion:
    """What the apply path does for a new version: the user's tags plus the ownership keys."""
    registry.register(spec, fingerprint, {**spec.tags, **ownership.ownership_tags(environment, spec.name,
                                                                                   fingerprint)}, SilentProgress())
    version = registry.newest(spec.name, fingerprint)
    assert version is not None
    return version


def _stored(emulator: AzureEmulator) -> dict[str, aml.ModelRecord]:
    workspace = arm.find_workspace(emulator.state, SUB, RG, WS)
    assert workspace is not None
    return {m.id: m for m in aml.models_in(emulator.state, workspace) if not m.archived}


def test_register_then_changed_files_register_version_2(registries: Registries, emulator: AzureEmulator,
                                                        prod_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = registries("prod")
    spec, fingerprint = _model_spec(prod_env)

    first = _register(registry, spec, fingerprint)
    (spec.path / "model.json").write_text('{"weights": [1, 2, 3]}\n')
    spec, changed = _model_spec(prod_env)
    second = _register(registry, spec, changed)

    assert first == ModelVersion(MODEL, 1, fingerprint, spec.description, spec.tags, spec.properties, "prod")
    assert (second.version, second.fingerprint, second.owner) == (2, changed, "prod") and changed != fingerprint
    assert [(v.version, v.fingerprint) for v in sorted(registry.list_owned(), key=lambda v: v.version)] \
        == [(1, fingerprint), (2, changed)]
    stored = _stored(emulator)[f"{MODEL}:2"]
    assert stored.kv_tags == {**spec.tags, ownership.MANAGED_BY: ownership.MANAGED_BY_VALUE,
                              ownership.ENVIRONMENT: "prod", ownership.NAME: MODEL}
    assert stored.properties == {**spec.properties, ownership.FINGERPRINT: changed}
    assert capsys.readouterr() == ("", "")  # the SDKs' prints and progress bars stay off the CLI's streams


def _register_unowned(emulator: AzureEmulator, name: str = MODEL) -> None:
    """A version someone registered by hand: no ownership tags."""
    workspace = arm.find_workspace(emulator.state, SUB, RG, WS)
    assert workspace is not None
    with emulator.state.lock:
        counters = aml._aml(emulator.state).setdefault("model_versions", {})
        counters[(workspace.key, name)] = version = counters.get((workspace.key, name), 0) + 1
        aml._models(emulator.state, workspace)[f"{name}:{version}"] = aml.ModelRecord(
            name, version, "aml://asset/" + "0" * 32, kv_tags={"team": "data"})


def test_list_owned_returns_only_this_environments_versions(registries: Registries, emulator: AzureEmulator,
                                                            prod_env: Path) -> None:
    registry = registries("prod")
    spec, fingerprint = _model_spec(prod_env)
    _register(registry, spec, fingerprint)
    _register(registries("staging"), replace(spec, name="other-model"), fingerprint, "staging")
    _register_unowned(emulator)

    owned = registry.list_owned()

    assert [(v.name, v.version, v.owner) for v in owned] == [(MODEL, 1, "prod")]
    assert owned[0].tags == spec.tags and ownership.FINGERPRINT not in owned[0].properties
    assert [v.name for v in registries("staging").list_owned()] == ["other-model"]


def test_update_replaces_tags_and_description_and_adds_properties(registries: Registries, emulator: AzureEmulator,
                                                                  prod_env: Path) -> None:
    registry = registries("prod")
    spec, fingerprint = _model_spec(prod_env)
    version = _register(registry, replace(spec, tags={"stage": "dev", "team": "a"}), fingerprint)

    tags = {"stage": "prod", **ownership.ownership_tags("prod", MODEL, fingerprint)}
    registry.update(version, "better", tags, {"dataset": "iris-v2"})

    stored = _stored(emulator)[f"{MODEL}:1"]
    assert stored.description == "better"
    assert ownership.user_tags(stored.kv_tags) == {"stage": "prod"} and ownership.owner_of(stored.kv_tags) == "prod"
    assert stored.properties == {**spec.properties, "dataset": "iris-v2", ownership.FINGERPRINT: fingerprint}
    assert registry.list_owned() == [replace(version, description="better", tags={"stage": "prod"},
                                             properties={**spec.properties, "dataset": "iris-v2"})]

    registry.update(registry.list_owned()[0], "", ownership.ownership_tags("prod", MODEL, fingerprint), {})
    stored = _stored(emulator)[f"{MODEL}:1"]
    assert not stored.description and ownership.user_tags(stored.kv_tags) == {}
    assert ownership.owner_of(stored.kv_tags) == "prod"  # ownership survives the replace


def test_delete_owned_removes_only_owned_versions(registries: Registries, emulator: AzureEmulator,
                                                  prod_env: Path) -> None:
    """SDK v1 deletes; SDK v2 can only archive, which takes the versions out of every listing alike."""
    registry = registries("prod")
    spec, fingerprint = _model_spec(prod_env)
    _register(registry, spec, fingerprint)
    _register(registries("staging"), spec, fingerprint, "staging")
    _register(registry, replace(spec, name="other-model"), fingerprint)

    registry.delete_owned(MODEL)
    registry.delete_owned(MODEL)  # nothing owned left: nothing to do

    assert sorted(_stored(emulator)) == [f"{MODEL}:2", "other-model:1"]
    assert [(v.name, v.version) for v in registry.list_owned()] == [("other-model", 1)]


def test_versions_registered_with_one_sdk_are_the_same_for_the_other(emulator: AzureEmulator, prod_env: Path) -> None:
    """One model registry per workspace: an environment switched from v1 to v2 (or back) lists the same
    versions, tags and properties, and numbers its next version after them."""
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    v1, v2 = open_registry("v1", "prod", credential), open_registry("v2", "prod", credential)
    spec, fingerprint = _model_spec(prod_env)
    _register(v1, replace(spec, description="from v1"), fingerprint)

    assert v2.list_owned() == v1.list_owned()
    (spec.path / "model.json").write_text('{"weights": [4]}\n')
    spec, changed = _model_spec(prod_env)
    assert _register(v2, spec, changed).version == 2
    assert v1.list_owned() == v2.list_owned() and len(v1.list_owned()) == 2


def test_v2_register_whose_answer_is_lost_registers_once(emulator: AzureEmulator, prod_env: Path) -> None:
    from azure.identity import DefaultAzureCredential

    registry = open_registry("v2", "prod", DefaultAzureCredential())
    spec, fingerprint = _model_spec(prod_env)
    rule = emulator.faults.lose_answers(method="PUT", path=r"/models/[^/]+/versions/\d+$", times=1)

    version = _register(registry, spec, fingerprint)

    assert rule.injected == 1 and version.version == 1
    assert sorted(_stored(emulator)) == [f"{MODEL}:1"]


def test_v2_listing_is_one_list_of_containers_and_one_per_model_name(emulator: AzureEmulator,
                                                                     prod_env: Path) -> None:
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    registry = open_registry("v2", "prod", credential)
    spec, fingerprint = _model_spec(prod_env)
    for name in ("a", "b", "c"):
        for _ in range(2):
            (spec.path / "model.json").write_text(f'{{"weights": ["{name}", {_}]}}\n')
            spec, fingerprint = _model_spec(prod_env)
            _register(registry, replace(spec, name=name), fingerprint)
    fresh = open_registry("v2", "prod", credential)
    emulator.reset_log()

    assert len(fresh.list_owned()) == 6

    calls = sorted(c.path.split("/models", 1)[1] for c in emulator.calls(host="management.azure.com"))
    assert calls == ["", "/a/versions", "/b/versions", "/c/versions"]


# --------------------------------------------------------------------------------------------------------------
# SDK v2: the ownership index (a marker on the model containers holding an environment's versions)
# --------------------------------------------------------------------------------------------------------------


def _version_listings(emulator: AzureEmulator) -> list[str]:
    return sorted(c.path.split("/models", 1)[1] for c in emulator.calls(host="management.azure.com")
                  if "/models" in c.path and c.method == "GET")


def _container_tags(emulator: AzureEmulator) -> dict[str, dict[str, str]]:
    workspace = arm.find_workspace(emulator.state, SUB, RG, WS)
    assert workspace is not None
    with emulator.state.lock:
        records = aml._aml(emulator.state).get("model_containers", {})
        return {name: dict(record["tags"]) for (key, name), record in records.items() if key == workspace.key}


def _v2(environment: str = "prod") -> ModelRegistry:
    from azure.identity import DefaultAzureCredential

    return open_registry("v2", environment, DefaultAzureCredential())


def _index(registry: ModelRegistry) -> None:
    from reconciler.providers.azure.ml_api import OwnedNamesIndex

    assert isinstance(registry, OwnedNamesIndex)
    registry.index_owned_names()


def test_v2_foreign_model_names_cost_no_request(emulator: AzureEmulator, prod_env: Path) -> None:
    """Model names of other tools and other environments are not read: only the declared names and the
    containers marked as holding this environment's versions (a name no longer declared, to prune it)."""
    registry = _v2()
    spec, fingerprint = _model_spec(prod_env)
    for name in ("a", "b", "gone"):
        _register(registry, replace(spec, name=name), fingerprint)
    _register(_v2("staging"), replace(spec, name="theirs"), fingerprint, "staging")
    for n in range(20):
        _register_unowned(emulator, f"foreign-{n:02d}")
    assert _container_tags(emulator)["gone"] == {"edge-reconciler.owner.prod": "true"}
    emulator.reset_log()

    owned = _v2().list_owned(["a", "b", "never-registered"])

    assert sorted((v.name, v.version) for v in owned) == [("a", 1), ("b", 1), ("gone", 1)]
    # One list of the containers, then the declared names and the marked one: 4 requests (25 before).
    assert _version_listings(emulator) == ["", "/a/versions", "/b/versions", "/gone/versions"]


def test_v2_versions_registered_before_the_index_are_read_until_an_apply_indexes_them(
        emulator: AzureEmulator, prod_env: Path) -> None:
    """Versions registered through SDK v1 (or before the index existed) sit in unmarked containers: every
    container is read until an apply marks them, names no longer declared first; then the index is trusted."""
    from azure.identity import DefaultAzureCredential

    v1 = open_registry("v1", "prod", DefaultAzureCredential())
    spec, fingerprint = _model_spec(prod_env)
    for name in ("kept", "dropped"):
        _register(v1, replace(spec, name=name), fingerprint)
    for n in range(3):
        _register_unowned(emulator, f"foreign-{n}")
    registry = _v2()
    emulator.reset_log()

    assert sorted(v.name for v in registry.list_owned(["kept"])) == ["dropped", "kept"]
    assert len(_version_listings(emulator)) == 1 + 5  # not trusted yet: every container
    emulator.reset_log()
    _index(registry)  # what an apply does before its first change
    puts = [c.path.rsplit("/", 1)[1] for c in emulator.calls("PUT", "management.azure.com")]
    assert puts == ["dropped", "kept"]  # the name no longer declared first
    assert _container_tags(emulator) == {name: {"edge-reconciler.owner.prod": "true"} for name in ("dropped", "kept")}
    emulator.reset_log()

    assert sorted(v.name for v in _v2().list_owned(["kept"])) == ["dropped", "kept"]
    assert _version_listings(emulator) == ["", "/dropped/versions", "/kept/versions"]


def test_v2_an_interrupted_indexing_leaves_the_index_untrusted(emulator: AzureEmulator, prod_env: Path) -> None:
    from azure.identity import DefaultAzureCredential

    v1 = open_registry("v1", "prod", DefaultAzureCredential())
    spec, fingerprint = _model_spec(prod_env)
    for name in ("kept", "dropped-1", "dropped-2"):
        _register(v1, replace(spec, name=name), fingerprint)
    registry = _v2()
    registry.list_owned(["kept"])
    emulator.faults.add(status=503, method="PUT", path="/models/dropped-2$", times=10)
    with pytest.raises(ProviderError):
        _index(registry)
    assert _container_tags(emulator) == {"dropped-1": {"edge-reconciler.owner.prod": "true"}}

    owned = _v2().list_owned(["kept"])  # "kept" is not marked: every container is read

    assert sorted(v.name for v in owned) == ["dropped-1", "dropped-2", "kept"]


def test_v2_pruning_every_owned_version_of_a_name_takes_it_out_of_the_index(emulator: AzureEmulator,
                                                                           prod_env: Path) -> None:
    registry = _v2()
    spec, fingerprint = _model_spec(prod_env)
    for name in ("kept", "pruned"):
        _register(registry, replace(spec, name=name), fingerprint)
    _register(_v2("staging"), replace(spec, name="pruned"), fingerprint, "staging")

    registry.delete_owned("pruned")

    assert _container_tags(emulator)["pruned"] == {"edge-reconciler.owner.staging": "true"}  # staging's stays
    emulator.reset_log()
    assert [v.name for v in _v2().list_owned(["kept"])] == ["kept"]
    assert _version_listings(emulator) == ["", "/kept/versions"]


def test_v2_pruning_a_name_without_a_container_does_nothing(emulator: AzureEmulator) -> None:
    registry = _v2()
    emulator.reset_log()

    registry.delete_owned("never-registered")

    calls = [(c.method, c.path.rsplit("/", 1)[-1], c.status) for c in emulator.calls(host="management.azure.com")]
    # Its versions (none), its container (none): nothing to archive, nothing to unmark, no error.
    assert calls == [("GET", "versions", 200), ("GET", "never-registered", 404)]
