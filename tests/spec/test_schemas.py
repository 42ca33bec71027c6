"""The JSON Schemas in schemas/: valid, self-documenting, and matching the shipped specs."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
ENVIRONMENTS = ROOT / "environments"
KINDS = {"Environment": "environment", "Model": "model", "Image": "image", "Deployment": "deployment"}
SCHEMA_HEADER = "# yaml-language-server: $schema=../../schemas/{}.schema.json"


def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


# Keywords under which a subschema documents a field (what the editor shows for a key or a map value).
# Conditional keywords (if/then/else/not, propertyNames) only constrain and are not walked.
def documented(schema: Any, pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (json pointer, subschema) for every property, map value, array item and $defs entry."""
    if not isinstance(schema, dict):
        return
    for keyword in ("properties", "patternProperties", "$defs"):
        for key, sub in schema.get(keyword, {}).items():
            if isinstance(sub, dict):
                path = f"{pointer}/{keyword}/{key}"
                yield path, sub
                yield from documented(sub, path)
    for keyword in ("additionalProperties", "items"):
        sub = schema.get(keyword)
        if isinstance(sub, dict):
            yield f"{pointer}/{keyword}", sub
            yield from documented(sub, f"{pointer}/{keyword}")
    for keyword in ("anyOf", "oneOf", "allOf"):
        for index, sub in enumerate(schema.get(keyword, [])):
            yield from documented(sub, f"{pointer}/{keyword}/{index}")


def all_documented() -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, path, sub) for name in KINDS.values() for path, sub in documented(load_schema(name))]


DOCUMENTED = all_documented()
DOCUMENTED_IDS = [f"{name}:{path}" for name, path, _ in DOCUMENTED]


def spec_documents() -> list[tuple[str, int, Any]]:
    found = []
    for file in sorted(ENVIRONMENTS.glob("*/*.yaml")):
        with file.open(encoding="utf-8") as stream:
            for index, document in enumerate(yaml.safe_load_all(stream)):
                found.append((str(file.relative_to(ROOT)), index, document))
    return found


DOCUMENTS = spec_documents()


# --- the schemas themselves ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", KINDS.values())
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://edge-reconciler.dev/schemas/v1/{name}.schema.json"
    assert schema["title"] and schema["description"]


@pytest.mark.parametrize("name", KINDS.values())
def test_schema_describes_the_whole_document(name: str) -> None:
    schema = load_schema(name)
    kind = next(k for k, v in KINDS.items() if v == name)
    assert schema["required"] == ["apiVersion", "kind", "metadata", "spec"]
    assert schema["properties"]["apiVersion"]["const"] == "reconciler/v1"
    assert schema["properties"]["kind"]["const"] == kind
    assert schema["properties"]["metadata"]["required"] == ["name"]
    assert set(schema["properties"]["metadata"]["properties"]) == {"name", "description", "tags"}
    for example in schema["examples"]:
        Draft202012Validator(schema).validate(example)


@pytest.mark.parametrize(("name", "path", "sub"), DOCUMENTED, ids=DOCUMENTED_IDS)
def test_every_property_has_title_description_and_examples(name: str, path: str, sub: dict[str, Any]) -> None:
    assert isinstance(sub.get("title"), str) and sub["title"], f"{name}{path}: no title"
    description = sub.get("description")
    assert isinstance(description, str) and len(description) >= 20, f"{name}{path}: no description"
    assert isinstance(sub.get("examples"), list) and sub["examples"], f"{name}{path}: no examples"


@pytest.mark.parametrize(("name", "path", "sub"), DOCUMENTED, ids=DOCUMENTED_IDS)
def test_every_example_validates_against_its_property(name: str, path: str, sub: dict[str, Any]) -> None:
    # evolve() keeps the root's resolver, so "$ref": "#/$defs/..." inside the subschema still resolves.
    check = validator(name).evolve(schema=sub)
    for example in sub["examples"]:
        errors = [e.message for e in check.iter_errors(example)]
        assert not errors, f"{name}{path}: example {example!r} is invalid: {errors}"


@pytest.mark.parametrize(("name", "path", "sub"), DOCUMENTED, ids=DOCUMENTED_IDS)
def test_objects_with_fixed_fields_are_closed(name: str, path: str, sub: dict[str, Any]) -> None:
    if "properties" in sub:
        assert sub.get("additionalProperties") is False, f"{name}{path}: additionalProperties is not false"


def test_walk_reaches_nested_fields() -> None:
    """Guards the walker itself: it must see deep fields, or the tests above prove little."""
    paths = {f"{name}:{path}" for name, path, _ in DOCUMENTED}
    assert "deployment:/$defs/module/properties/restartPolicy" in paths
    assert "deployment:/$defs/route/anyOf/1/properties/priority" in paths
    assert "deployment:/properties/spec/properties/metrics/additionalProperties" in paths
    assert "environment:/$defs/secretRef/properties/fromEnv" in paths
    assert "environment:/properties/spec/properties/azure/properties/iotHub/properties/hostName" in paths
    assert "image:/properties/spec/properties/models/items" in paths
    assert len(paths) > 80


# --- the shipped specs ------------------------------------------------------------------------------------


def test_sample_environments_are_present() -> None:
    files = {(path, index) for path, index, _ in DOCUMENTS}
    for env in ("local", "prod"):
        for kind in ("environment", "models", "images"):
            assert (f"environments/{env}/{kind}.yaml", 0) in files
        assert (f"environments/{env}/deployments.yaml", 1) in files


@pytest.mark.parametrize(("path", "index", "document"), DOCUMENTS, ids=[f"{p}#{i}" for p, i, _ in DOCUMENTS])
def test_spec_documents_validate_against_their_kind(path: str, index: int, document: Any) -> None:
    assert isinstance(document, dict) and document.get("kind") in KINDS, f"{path}#{index}: unknown kind"
    errors = sorted(validator(KINDS[document["kind"]]).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


@pytest.mark.parametrize("path", sorted({p for p, _, _ in DOCUMENTS}))
def test_spec_files_point_the_editor_at_their_schema(path: str) -> None:
    first_line = (ROOT / path).read_text(encoding="utf-8").splitlines()[0]
    kinds = {d["kind"] for p, _, d in DOCUMENTS if p == path}
    assert len(kinds) == 1
    assert first_line == SCHEMA_HEADER.format(KINDS[kinds.pop()])
    assert (ROOT / path).parent.joinpath(first_line.split("=", 1)[1]).resolve().is_file()


def test_sample_environments_cross_reference() -> None:
    """Names used across documents exist (the loader checks this too; here it keeps the samples honest)."""
    for env in ("local", "prod"):
        docs = [d for p, _, d in DOCUMENTS if p.startswith(f"environments/{env}/")]
        by_kind: dict[str, dict[str, Any]] = {}
        for d in docs:
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        (environment,) = by_kind["Environment"].values()
        assert environment["metadata"]["name"] == env
        for image in by_kind["Image"].values():
            assert set(image["spec"]["models"]) <= set(by_kind["Model"])
        for deployment in by_kind["Deployment"].values():
            spec = deployment["spec"]
            if "registry" in spec:
                assert spec["registry"] in environment["spec"]["registries"]
            for module in spec["modules"].values():
                if "/" not in module["image"] and ":" not in module["image"]:
                    assert module["image"] in by_kind["Image"]
        for model in by_kind["Model"].values():
            assert (ENVIRONMENTS / env / model["spec"]["path"]).exists()


# --- what must be refused ---------------------------------------------------------------------------------


def sample(env: str, file: str, index: int = 0) -> dict[str, Any]:
    for path, i, document in DOCUMENTS:
        if path == f"environments/{env}/{file}" and i == index:
            return copy.deepcopy(document)
    raise LookupError(f"{env}/{file}#{index}")


def errors_of(kind: str, document: Any) -> list[str]:
    return [e.message for e in validator(kind).iter_errors(document)]


def test_literal_connection_string_is_refused() -> None:
    document = sample("prod", "environment.yaml")
    document["spec"]["azure"]["iotHub"]["connectionString"] = (
        "HostName=contoso-edge-prod.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=abc="
    )
    errors = errors_of("environment", document)
    assert any("is not of type 'object'" in message for message in errors), errors


def test_secret_ref_needs_an_environment_variable_name() -> None:
    document = sample("prod", "environment.yaml")
    document["spec"]["azure"]["iotHub"]["connectionString"] = {"fromEnv": "lower-case"}
    assert errors_of("environment", document)
    document["spec"]["azure"]["iotHub"]["connectionString"] = {"fromEnv": "OK", "value": "secret"}
    assert errors_of("environment", document)


@pytest.mark.parametrize(
    ("env", "file", "index", "where"),
    [
        ("local", "environment.yaml", 0, ()),
        ("prod", "environment.yaml", 0, ("spec", "azure", "iotHub")),
        ("local", "models.yaml", 0, ("metadata",)),
        ("local", "images.yaml", 0, ("spec",)),
        ("local", "deployments.yaml", 0, ("spec", "modules", "scorer")),
        ("local", "deployments.yaml", 0, ("spec", "edgeHub")),
    ],
)
def test_unknown_fields_are_refused(env: str, file: str, index: int, where: tuple[str, ...]) -> None:
    document = sample(env, file, index)
    target = document
    for key in where:
        target = target[key]
    target["unknownField"] = "x"
    errors = errors_of(KINDS[document["kind"]], document)
    assert any("unknownField" in message for message in errors), errors


def test_deployment_with_both_target_condition_and_device_ids_is_refused() -> None:
    document = sample("local", "deployments.yaml")
    document["spec"]["deviceIds"] = ["edge-dev-01"]
    assert errors_of("deployment", document)
    del document["spec"]["targetCondition"]
    assert not errors_of("deployment", document)
    del document["spec"]["deviceIds"]
    assert errors_of("deployment", document)


def test_azure_provider_needs_azure_settings() -> None:
    document = sample("prod", "environment.yaml")
    del document["spec"]["azure"]
    assert any("'azure' is a required property" in m for m in errors_of("environment", document))


def test_local_provider_refuses_azure_only_settings() -> None:
    document = sample("local", "environment.yaml")
    assert not errors_of("environment", document)
    document["spec"]["registries"]["local"] = {"acr": "contosoedgeprod"}
    assert errors_of("environment", document)
    document = sample("local", "environment.yaml")
    document["spec"]["azure"] = sample("prod", "environment.yaml")["spec"]["azure"]
    assert errors_of("environment", document)


def test_layered_deployment_cannot_configure_the_runtime() -> None:
    document = sample("local", "deployments.yaml", 1)
    assert document["spec"]["layered"] is True
    assert not errors_of("deployment", document)
    document["spec"]["edgeHub"] = {"storeAndForwardTimeToLiveSecs": 60}
    assert errors_of("deployment", document)


def test_registry_is_required_only_for_image_spec_modules() -> None:
    base = sample("local", "deployments.yaml")
    del base["spec"]["registry"]
    assert any("'registry' is a required property" in m for m in errors_of("deployment", base))
    layered = sample("local", "deployments.yaml", 1)
    assert "registry" not in layered["spec"]
    assert not errors_of("deployment", layered)


SAMPLE_OF = {
    "deployment": ("local", "deployments.yaml"),
    "model": ("local", "models.yaml"),
    "image": ("local", "images.yaml"),
    "environment": ("prod", "environment.yaml"),
}
SIX_METRICS = {f"m{i}": "SELECT deviceId FROM devices" for i in range(6)}
FIFTY_ONE_MODULES = {f"m{i}": {"image": "a:1"} for i in range(51)}


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("deployment", "metadata.name", "a" * 120),
        ("deployment", "metadata.name", "Iris_Base"),
        ("deployment", "metadata.tags.bad label", "x"),
        ("deployment", "metadata.tags.managed-by", "me"),
        ("deployment", "metadata.tags.app", "a" * 129),
        ("deployment", "spec.targetCondition", 'tags.environment="dev"'),
        ("deployment", "spec.priority", -1),
        ("deployment", "spec.modules.bad/name", {"image": "iris-scorer"}),
        ("deployment", "spec.modules.edgeHub", {"image": "iris-scorer"}),
        ("deployment", "spec.modules.scorer.restartPolicy", "sometimes"),
        ("deployment", "spec.modules.scorer.image", "Not A Name"),
        ("deployment", "spec.modules.scorer.startupOrder", 4294967296),
        ("deployment", "spec.modules.scorer.env.A B", "x"),
        ("deployment", "spec.modules.scorer.createOptions", '{"HostConfig": {}}'),
        ("deployment", "spec.routes.r", "SELECT * INTO $upstream"),
        ("deployment", "spec.routes.r", {"route": "FROM /* INTO $upstream", "priority": 10}),
        ("deployment", "spec.edgeHub.storeAndForwardTimeToLiveSecs", "2h"),
        ("deployment", "spec.metrics", SIX_METRICS),
        ("deployment", "spec.modules", FIFTY_ONE_MODULES),
        ("deployment", "apiVersion", "reconciler/v2"),
        ("model", "spec.path", "/etc/passwd"),
        ("model", "metadata.name", "-iris"),
        ("model", "spec.properties.n", 1),
        ("model", "metadata.tags.managed-by", "someone-else"),
        ("image", "metadata.tags.managed-by", "someone-else"),
        ("image", "spec.models", []),
        ("image", "spec.models", ["iris-classifier", "iris-classifier"]),
        ("image", "spec.entryScript", "score.sh"),
        ("image", "spec.runtime", "java"),
        ("image", "kind", "Model"),
        ("environment", "spec.provider", "aws"),
        ("environment", "spec.registries.Bad_Name", {}),
        ("environment", "spec.azure.subscriptionId", "not-a-guid"),
        ("environment", "spec.registries.workspace.acr", "my-acr"),
        ("environment", "spec.registries.workspace.credentials", "password"),
    ],
)
def test_invalid_values_are_refused(kind: str, path: str, value: Any) -> None:
    document = sample(*SAMPLE_OF[kind])
    assert not errors_of(kind, document)
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[key]
    target[last] = value
    assert errors_of(kind, document), f"{path}={value!r} was accepted"


NEWER_THAN_DRAFT_07 = {"$dynamicRef", "$dynamicAnchor", "$anchor", "$recursiveRef", "prefixItems",
                       "unevaluatedProperties", "unevaluatedItems", "dependentSchemas", "dependentRequired",
                       "minContains", "maxContains"}


def keywords(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield key
            if key not in ("properties", "patternProperties", "$defs", "examples", "default", "const", "enum"):
                yield from keywords(value)
            elif key in ("properties", "patternProperties", "$defs"):
                for sub in value.values():
                    yield from keywords(sub)
    elif isinstance(schema, list):
        for item in schema:
            yield from keywords(item)


@pytest.mark.parametrize("name", KINDS.values())
def test_schemas_stay_usable_by_draft_07_editors(name: str) -> None:
    """The YAML language server applies draft-07 semantics: only $defs (a plain JSON pointer target) is newer."""
    used = set(keywords(load_schema(name)))
    assert "$ref" in used or name in ("model", "image")
    assert not used & NEWER_THAN_DRAFT_07
    refs = json.dumps(load_schema(name)).split('"$ref": ')[1:]
    assert all(r.startswith('"#/$defs/') for r in refs)
