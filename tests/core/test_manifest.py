from __future__ import annotations

import json
from pathlib import Path

from reconciler.core import manifest
from reconciler.hub import manifest as hub_manifest
from reconciler.model.state import LiveRegistry
from reconciler.spec.loader import load_environment

REGISTRY = LiveRegistry("local", "localhost", "local-pull", "1")


def test_create_options_are_minified_and_split_into_512_character_chunks() -> None:
    options = {"Env": ["X=" + "y" * 1200]}
    chunks = hub_manifest.create_options_chunks(options)
    assert [len(c) for c in chunks] == [512, 512, len(json.dumps(options, separators=(",", ":"))) - 1024]
    assert json.loads("".join(chunks)) == options


def test_base_manifest_has_agent_hub_credentials_and_resolved_images(sample_env: Path) -> None:
    spec = load_environment(sample_env).deployments["iris-base"]
    content = manifest.render(spec, {"iris-scorer": "localhost/iris-scorer:abc"}, REGISTRY)
    agent = content["$edgeAgent"]["properties.desired"]
    assert agent["runtime"]["settings"]["registryCredentials"] == {
        "local": {"address": "localhost", "username": "local-pull", "password": "<secret:registry/local/password>"}}
    assert agent["modules"]["scorer"]["settings"]["image"] == "localhost/iris-scorer:abc"
    assert set(agent["systemModules"]) == {"edgeAgent", "edgeHub"}
    assert content["$edgeHub"]["properties.desired"]["storeAndForwardConfiguration"]["timeToLiveSecs"] > 0
    assert not hub_manifest.is_layered_content(content)


def test_layered_manifest_uses_dotted_paths(sample_env: Path) -> None:
    spec = load_environment(sample_env).deployments["iris-site-a-sensor"]
    content = manifest.render(spec, {}, None)
    assert hub_manifest.is_layered_content(content)
    assert "properties.desired.modules.sensor" in content["$edgeAgent"]
    assert all(key.startswith("properties.desired.routes.") for key in content["$edgeHub"])


def test_passwords_are_filled_only_on_request_and_redacted_on_read(sample_env: Path) -> None:
    spec = load_environment(sample_env).deployments["iris-base"]
    content = manifest.render(spec, {"iris-scorer": "localhost/iris-scorer:abc"}, REGISTRY)
    filled = hub_manifest.fill_passwords(content, {"local": "s3cret!"})
    assert "s3cret!" in json.dumps(filled) and "s3cret!" not in json.dumps(content)
    assert hub_manifest.redact_passwords(filled) == content


def test_content_hash_changes_with_content_and_credential_version(sample_env: Path) -> None:
    spec = load_environment(sample_env).deployments["iris-base"]
    content = manifest.render(spec, {"iris-scorer": "localhost/iris-scorer:abc"}, REGISTRY)
    first = manifest.content_hash(content, {"local": "1"})
    assert manifest.content_hash(content, {"local": "1"}) == first
    assert manifest.content_hash(content, {"local": "2"}) != first
    other = manifest.render(spec, {"iris-scorer": "localhost/iris-scorer:def"}, REGISTRY)
    assert manifest.content_hash(other, {"local": "1"}) != first
