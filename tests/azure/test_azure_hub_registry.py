"""``AzureProvider`` against the emulator: deployments on IoT Hub, device credentials on ACR, the lock.

Real SDK clients (azure-iot-hub, azure-mgmt-containerregistry, azure-identity, azureml-core) reach the
emulator through its HTTPS proxy; nothing is patched. What the provider sent is checked in the emulator's
request log; what it left behind in the emulator's state.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from reconciler.core.plan_json import plan_to_dict
from reconciler.engine import Engine
from reconciler.errors import LockHeld, PermanentProviderError, ProviderError
from reconciler.model.plan import Action, Change
from reconciler.model.specs import Kind, ResourceKey
from reconciler.providers.azure import registry as acr_module
from reconciler.providers.azure.lock import LockRecord, lock_device_id
from tests.azure.conftest import (
    ACR,
    BOTH_PASSWORD_MODES,
    CLIENT_SECRET,
    CONNECTION_STRING,
    HUB,
    HUB_KEY,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    AzureWorld,
)
from tests.azure_emulator import iothub
from tests.conftest import apply_change

DEPLOYMENTS = frozenset({Kind.DEPLOYMENT})
PREFIX = acr_module.token_prefix("prod", "workspace")


def owned(world: AzureWorld) -> dict[str, dict[str, Any]]:
    return {cid: cfg for cid, cfg in world.configurations().items()
            if (cfg.get("labels") or {}).get("edge-reconciler.environment") == "prod"}


def deployment_changes(world: AzureWorld) -> list[Change]:
    """What a plan would still do to deployments (these tests leave models and images unapplied)."""
    return [c for c in world.plan().changes if c.key.kind is Kind.DEPLOYMENT]


def credentials_in(cfg: dict[str, Any]) -> dict[str, Any]:
    agent = cfg["content"]["modulesContent"]["$edgeAgent"]
    desired = agent.get("properties.desired")
    if desired is not None:
        return dict(desired["runtime"]["settings"]["registryCredentials"])
    prefix = "properties.desired.runtime.settings.registryCredentials."
    return {key[len(prefix):]: value for key, value in agent.items() if key.startswith(prefix)}


def token_password(world: AzureWorld, token: str) -> str:
    return world.registry.tokens[token].passwords["password1"].value


def unmanaged_base(world: AzureWorld, cid: str, condition: str, priority: int) -> None:
    """A deployment made in the portal: no ownership labels."""
    from azure.iot.hub import IoTHubConfigurationManager
    from azure.iot.hub.models import Configuration, ConfigurationContent

    content = {"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "runtime": {"type": "docker",
               "settings": {}}, "systemModules": {}, "modules": {}}},
               "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {}}}}
    manager = IoTHubConfigurationManager.from_connection_string(CONNECTION_STRING)
    manager.create_configuration(Configuration(id=cid, schema_version="1.0", labels={"team": "ops"},
                                               content=ConfigurationContent(modules_content=content),
                                               target_condition=condition, priority=priority))


# --------------------------------------------------------------------------------------------------------------
# The whole flow
# --------------------------------------------------------------------------------------------------------------


@BOTH_PASSWORD_MODES
def test_engine_applies_prod_and_converges(azure_world: AzureWorld) -> None:
    with Engine(azure_world.env_dir) as engine:
        result = engine.apply()
        assert [c.action for c in result.applied] == [Action.CREATE] * 4
    with Engine(azure_world.env_dir) as engine:
        assert not engine.plan().has_changes
        report = engine.drift()
    assert not report.has_drift
    # The hub evaluates a deployment's metrics up to 5 minutes after it is created: none yet, never zeros.
    assert {r.name: r.health for r in report.rollouts} == {"iris-base": None, "iris-site-a-sensor": None}
    azure_world.pass_evaluation_cycle()
    with Engine(azure_world.env_dir) as engine:
        report = engine.drift()
    assert {r.name: (r.health.targeted, r.health.applied) for r in report.rollouts} == {  # type: ignore[union-attr]
        "iris-base": (3, 3), "iris-site-a-sensor": (2, 2)}
    assert sorted(owned(azure_world)) == sorted(c.target for c in result.applied if c.key.kind is Kind.DEPLOYMENT)
    assert lock_device_id("prod") not in azure_world.hub.devices  # released
    # The engine took the lock in the hub: create the lock device, tag it, ..., delete it.
    assert azure_world.emulator.calls("PUT", HUB, f"/devices/{lock_device_id('prod')}")
    assert azure_world.emulator.calls("DELETE", HUB, f"/devices/{lock_device_id('prod')}")


@BOTH_PASSWORD_MODES
def test_create_writes_owned_labels_and_the_token_password(azure_world: AzureWorld) -> None:
    plan = azure_world.apply(kinds=DEPLOYMENTS)
    assert [c.action for c in plan.changes if c.key.kind is Kind.DEPLOYMENT] == [Action.CREATE] * 2
    deployments = owned(azure_world)
    base = next(cfg for cid, cfg in deployments.items() if cid.startswith("iris-base-"))
    assert base["labels"] == {"app": "iris", "managed-by": "edge-reconciler", "edge-reconciler.environment": "prod",
                              "edge-reconciler.name": "iris-base",
                              "edge-reconciler.fingerprint": base["id"].rsplit("-", 1)[1]}
    assert (base["priority"], base["targetCondition"]) == (10, "tags.environment='prod'")
    credential = credentials_in(base)["workspace"]
    token = f"{PREFIX}-v1"
    assert credential["username"] == token and credential["address"] == f"{ACR}.azurecr.io"
    assert credential["password"] == token_password(azure_world, token)  # a password devices can pull with
    scope_map = azure_world.registry.scope_maps[PREFIX]
    assert sorted(scope_map.actions) == ["repositories/iris-scorer/content/read",
                                         "repositories/iris-scorer/metadata/read"]
    # Creates carry no If-Match; the configuration body's id matches the path.
    puts = azure_world.hub_requests("PUT", "/configurations/")
    assert len(puts) == 2 and all("if-match" not in r.headers for r in puts)


def test_noop_read_snapshot_makes_a_bounded_number_of_calls(azure_world: AzureWorld) -> None:
    """What one plan reads, from a fresh provider (a plan's process opens everything anew): one request per
    resource kind, whatever the number of deployments."""
    azure_world.apply(kinds=DEPLOYMENTS)
    desired = azure_world.desired()
    counts = []
    for extra in range(3):
        unmanaged_base(azure_world, f"portal-{extra}", "tags.site='b'", 1)
        azure_world.emulator.reset_log()
        snapshot = azure_world.provider().read_snapshot(desired)
        calls = azure_world.emulator.calls()
        counts.append(len(calls))
        assert len(snapshot.deployments) == 3 + extra
        assert sorted((c.method, c.path) for c in azure_world.emulator.calls(host=HUB)) == [
            ("GET", "/configurations"), ("GET", "/twins/edge-reconciler-credentials-prod")]  # + the password store
        # The workspace (its registry id), the registry (its login server) and its tokens: no GET /subscriptions.
        assert sorted(c.path.rsplit("/", 1)[-1] for c in azure_world.emulator.calls(host="management.azure.com")) \
            == sorted([ACR, "tokens", "mlw-edge-prod"])
        aad = [c.path.rsplit("/", 1)[-1] for c in azure_world.emulator.calls(host="login.microsoftonline.com")]
        assert aad == ["openid-configuration", "token"]  # MSAL's tenant discovery, then one token for one scope
        assert sorted(c.path.rsplit("/", 1)[-1] for c in calls if c.host.endswith(".azurecr.io")) == [
            "_tags", "exchange", "token"]  # one ACR token, then one tag listing per image name
        assert [c.path.rsplit("/", 1)[-1] for c in calls if "modelmanagement" in c.host] == ["models"]
    # AAD 2, hub 2, ARM 3, models 1, ACR 3 (Azure ML discovery: cached on disk since the apply); 12 before
    assert counts == [11, 11, 11]


def test_a_snapshot_lists_the_images_while_the_models_are_still_being_listed(azure_world: AzureWorld) -> None:
    """The reads that do not depend on each other overlap: with the model listing answered 1.5 s late, the image
    tag listings are done before it (they used to wait for it: both went through the workspace connection's
    lock). The requests are the same either way."""
    azure_world.apply(kinds=DEPLOYMENTS)
    desired = azure_world.desired()
    azure_world.provider().read_snapshot(desired)  # Azure ML's discovery, cached on disk
    azure_world.emulator.faults.add(host=r".*\.modelmanagement\.azureml\.net", path="/models$", latency=1.5)
    azure_world.emulator.reset_log()

    azure_world.provider().read_snapshot(desired)

    done = [c.path.rsplit("/", 1)[-1] for c in azure_world.emulator.calls()]
    assert done.index("_tags") < done.index("models")


@BOTH_PASSWORD_MODES
def test_update_in_place_sends_a_fresh_configuration_with_the_quoted_etag(azure_world: AzureWorld) -> None:
    azure_world.apply(kinds=DEPLOYMENTS)
    before = {cid: dict(cfg) for cid, cfg in owned(azure_world).items()}
    azure_world.edit("deployments.yaml", "priority: 10", "priority: 15")
    azure_world.emulator.reset_log()
    plan = azure_world.apply(kinds=DEPLOYMENTS)
    changes = [c for c in plan.changes if c.key.kind is Kind.DEPLOYMENT]
    assert [(c.action, c.key.name) for c in changes] == [(Action.UPDATE, "iris-base")]
    base_id = changes[0].target
    assert sorted(owned(azure_world)) == sorted(before)  # same ids: updated in place
    after = azure_world.configurations()[base_id]
    assert after["priority"] == 15 and after["etag"] == "Mg=="
    assert after["content"] == before[base_id]["content"]  # the password too: untouched
    assert after["labels"] == before[base_id]["labels"]
    puts = azure_world.hub_requests("PUT", "/configurations/")
    assert [r.headers.get("if-match") for r in puts] == ['"MQ=="']
    body = json.loads(puts[0].body)
    assert not {"etag", "createdTimeUtc", "systemMetrics"} & set(body)  # a fresh object, not the GET result
    assert body["priority"] == 15


@BOTH_PASSWORD_MODES
def test_replace_creates_the_new_deployment_before_deleting_the_old(azure_world: AzureWorld) -> None:
    azure_world.apply(kinds=DEPLOYMENTS)
    old_ids = set(owned(azure_world))
    azure_world.edit("deployments.yaml", "MODEL_NAME: iris-classifier", "MODEL_NAME: iris-classifier-v2")
    azure_world.emulator.reset_log()
    plan = azure_world.apply(kinds=DEPLOYMENTS)
    change = next(c for c in plan.changes if c.key.kind is Kind.DEPLOYMENT)
    assert change.action is Action.REPLACE
    assert change.target not in old_ids and change.actual is not None and change.actual.id in old_ids
    writes = [(c.method, c.path) for c in azure_world.emulator.calls(host=HUB) if c.method in ("PUT", "DELETE")]
    assert writes == [("PUT", f"/configurations/{change.target}"), ("DELETE", f"/configurations/{change.actual.id}")]
    delete = azure_world.hub_requests("DELETE", "/configurations/")[0]
    assert delete.headers["if-match"] == '"MQ=="'
    assert set(owned(azure_world)) == (old_ids - {change.actual.id}) | {change.target}
    # The new deployment reuses the token password the other deployment embeds: no new password.
    assert not azure_world.arm_calls("POST", "generateCredentials")
    assert not deployment_changes(azure_world)


def test_delete_only_with_prune_and_unmanaged_deployments_are_never_touched(azure_world: AzureWorld) -> None:
    azure_world.apply(kinds=DEPLOYMENTS)
    unmanaged_base(azure_world, "portal-made", "tags.environment='prod'", 5)
    text = (azure_world.env_dir / "deployments.yaml").read_text()
    (azure_world.env_dir / "deployments.yaml").write_text(text.split("\n---\n")[0] + "\n")
    plan = azure_world.apply(kinds=DEPLOYMENTS)
    assert not [c for c in plan.changes if c.key.kind is Kind.DEPLOYMENT]
    assert plan.orphans == (ResourceKey(Kind.DEPLOYMENT, "iris-site-a-sensor"),)
    assert plan.unmanaged == ("deployment/portal-made",)
    pruned = azure_world.apply(kinds=DEPLOYMENTS, prune=True)
    assert [(c.action, c.key.name) for c in pruned.changes if c.key.kind is Kind.DEPLOYMENT] == [
        (Action.DELETE, "iris-site-a-sensor")]
    assert sorted(azure_world.configurations()) == sorted([*owned(azure_world), "portal-made"])
    assert len(owned(azure_world)) == 1


def test_a_full_hub_is_reported_with_its_documented_code_and_what_to_do(azure_world: AzureWorld) -> None:
    for index in range(100):
        unmanaged_base(azure_world, f"portal-{index:03d}", "tags.environment='nowhere'", 1)
    with pytest.raises(PermanentProviderError) as full:
        azure_world.apply(kinds=DEPLOYMENTS)
    message = str(full.value)
    assert "HTTP 413 ConfigurationCountLimitExceeded" in message and "at its limit of deployments" in message
    assert len(azure_world.configurations()) == 100


def test_the_provider_refuses_to_touch_what_it_does_not_own(azure_world: AzureWorld) -> None:
    unmanaged_base(azure_world, "portal-made", "tags.environment='prod'", 5)
    provider = azure_world.provider()
    snapshot = provider.read_snapshot(azure_world.desired())
    live = next(d for d in snapshot.deployments if d.id == "portal-made")
    assert (live.owner, live.name, live.content_hash) == (None, "portal-made", None)
    for action in (Action.DELETE, Action.UPDATE):
        change = Change(ResourceKey(Kind.DEPLOYMENT, "portal-made"), action, "forged", actual=live,
                        desired=None if action is Action.DELETE else _any_desired(azure_world, provider))
        with pytest.raises(PermanentProviderError, match="never changes it"):
            apply_change(provider, change, azure_world.desired().environment)
    assert azure_world.configurations()["portal-made"]["etag"] == "MQ=="


def _any_desired(world: AzureWorld, provider: Any) -> Any:
    plan = world.plan(provider)
    return next(c.desired for c in plan.changes if c.key.kind is Kind.DEPLOYMENT)


@BOTH_PASSWORD_MODES
def test_an_interrupted_replace_is_finished_by_the_next_plan(azure_world: AzureWorld) -> None:
    azure_world.apply(kinds=DEPLOYMENTS)
    azure_world.edit("deployments.yaml", "MODEL_NAME: iris-classifier", "MODEL_NAME: other")
    provider = azure_world.provider()
    plan = azure_world.plan(provider)
    replace = next(c for c in plan.changes if c.action is Action.REPLACE)
    # Only the create half ran (as if the process died in between).
    create = Change(replace.key, Action.CREATE, "half", desired=replace.desired)
    apply_change(provider, create, azure_world.desired().environment)
    again = deployment_changes(azure_world)
    assert [(c.action, c.target) for c in again] == [(Action.DELETE, replace.actual.id)]  # type: ignore[union-attr]
    azure_world.apply(kinds=DEPLOYMENTS)
    assert not deployment_changes(azure_world)


# --------------------------------------------------------------------------------------------------------------
# Throttling
# --------------------------------------------------------------------------------------------------------------


def test_one_request_in_five_throttled_still_converges(azure_world: AzureWorld) -> None:
    hub_faults = azure_world.emulator.faults.add(host=r".*\.azure-devices\.net", status=429, retry_after=1, every=5)
    arm_faults = azure_world.emulator.faults.add(host=r"management\.azure\.com", path="ContainerRegistry",
                                                 status=429, retry_after=1, every=5)
    provider = azure_world.provider()
    azure_world.apply(provider, kinds=DEPLOYMENTS)
    azure_world.edit("deployments.yaml", "priority: 10", "priority: 11")
    azure_world.apply(provider, kinds=DEPLOYMENTS)
    azure_world.edit("deployments.yaml", "MODEL_NAME: iris-classifier", "MODEL_NAME: x")
    azure_world.apply(provider, kinds=DEPLOYMENTS)
    with provider.lock("ci"):
        pass
    assert hub_faults.injected >= 3 and arm_faults.injected >= 1
    assert provider.stats.retries >= hub_faults.injected + arm_faults.injected
    assert not deployment_changes(azure_world)
    assert len(owned(azure_world)) == 2


def test_throttling_that_does_not_stop_is_a_transient_error_with_retry_after(azure_world: AzureWorld) -> None:
    azure_world.emulator.faults.add(host=r".*\.azure-devices\.net", path="/configurations", status=429,
                                    retry_after=7)
    provider = azure_world.provider()
    with pytest.raises(ProviderError) as raised:
        provider.read_snapshot(azure_world.desired())
    error = raised.value
    assert type(error).__name__ == "TransientProviderError" and error.retry_after == 7
    assert "throttling" in str(error) and "after 50 attempts" in str(error)  # RetryPolicy.throttled_attempts
    assert len(azure_world.emulator.calls("GET", HUB, "/configurations")) == 50


def test_throttling_that_asks_to_wait_more_than_six_times_is_waited_out(azure_world: AzureWorld) -> None:
    """A service that answers 429 with Retry-After is pacing the client: ARM's read bucket refuses a read several
    times in a row when more are in flight than it refills. Six such answers used to end the plan."""
    azure_world.emulator.faults.add(host=r".*\.azure-devices\.net", path="/configurations", status=429,
                                    retry_after=7, times=8)
    provider = azure_world.provider()
    snapshot = provider.read_snapshot(azure_world.desired())
    assert snapshot.deployments == ()
    assert len(azure_world.emulator.calls("GET", HUB, "/configurations")) == 9
    assert provider.stats.retries == 8


def test_other_failures_still_end_after_six_attempts_beside_throttling(azure_world: AzureWorld) -> None:
    """The answers that pace count apart: 503s (no Retry-After) still stop at six attempts, with 429s between."""
    hub = r".*\.azure-devices\.net"
    azure_world.emulator.faults.add(host=hub, path="/configurations", status=429, retry_after=7, times=4)
    azure_world.emulator.faults.add(host=hub, path="/configurations", status=503)
    provider = azure_world.provider()
    with pytest.raises(ProviderError) as raised:
        provider.read_snapshot(azure_world.desired())
    assert "after 10 attempts" in str(raised.value)
    assert len(azure_world.emulator.calls("GET", HUB, "/configurations")) == 10


# --------------------------------------------------------------------------------------------------------------
# Registry credentials
# --------------------------------------------------------------------------------------------------------------


@BOTH_PASSWORD_MODES
def test_one_token_serves_every_deployment_and_a_new_one_keeps_the_others_valid(azure_world: AzureWorld) -> None:
    text = (azure_world.env_dir / "deployments.yaml").read_text()
    first, second = text.split("\n---\n")
    (azure_world.env_dir / "deployments.yaml").write_text(first + "\n")
    azure_world.apply(kinds=DEPLOYMENTS)
    token = f"{PREFIX}-v1"
    password = token_password(azure_world, token)
    # A second deployment using the registry, in a later apply.
    extra = first.replace("name: iris-base", "name: iris-canary").replace("priority: 10", "priority: 12")
    (azure_world.env_dir / "deployments.yaml").write_text(first + "\n---\n" + extra + "\n---\n" + second)
    azure_world.apply(kinds=DEPLOYMENTS)
    assert token_password(azure_world, token) == password  # not regenerated: the first deployment still pulls
    embedded = {cid: credentials_in(cfg).get("workspace") for cid, cfg in owned(azure_world).items()}
    assert {c["password"] for c in embedded.values() if c} == {password}
    assert len(azure_world.arm_calls("POST", "generateCredentials")) == 1
    assert list(azure_world.registry.tokens) == [token]


@BOTH_PASSWORD_MODES
def test_rotation_replaces_the_deployments_then_deletes_the_old_token(azure_world: AzureWorld) -> None:
    azure_world.apply(kinds=DEPLOYMENTS)
    provider = azure_world.provider()
    assert provider.rotate_registry_credentials("workspace") == "token:v2"
    plan = azure_world.plan(provider)
    changes = [c for c in plan.changes if c.key.kind is Kind.DEPLOYMENT]
    assert [(c.action, c.key.name) for c in changes] == [(Action.REPLACE, "iris-base")]  # the layer has no registry
    assert "registry credentials rotated" in changes[0].reason or "content.$edgeAgent" in changes[0].reason
    azure_world.apply(provider, kinds=DEPLOYMENTS)
    assert list(azure_world.registry.tokens) == [f"{PREFIX}-v2"]
    base = next(cfg for cid, cfg in owned(azure_world).items() if cid.startswith("iris-base-"))
    assert credentials_in(base)["workspace"]["password"] == token_password(azure_world, f"{PREFIX}-v2")
    assert not deployment_changes(azure_world)


@BOTH_PASSWORD_MODES
def test_a_token_broken_outside_the_reconciler_is_replaced(azure_world: AzureWorld) -> None:
    azure_world.apply(kinds=DEPLOYMENTS)
    azure_world.registry.tokens[f"{PREFIX}-v1"].status = "disabled"  # someone disabled it in the portal
    snapshot = azure_world.provider().read_snapshot(azure_world.desired())
    assert snapshot.registries["workspace"].credential_version == "token:v2"
    azure_world.apply(kinds=DEPLOYMENTS)
    base = next(cfg for cid, cfg in owned(azure_world).items() if cid.startswith("iris-base-"))
    assert credentials_in(base)["workspace"]["username"] == f"{PREFIX}-v2"
    assert list(azure_world.registry.tokens) == [f"{PREFIX}-v2"]
    assert not deployment_changes(azure_world)


@BOTH_PASSWORD_MODES
def test_a_password_regenerated_outside_the_reconciler_is_replaced(azure_world: AzureWorld) -> None:
    azure_world.apply(kinds=DEPLOYMENTS)
    for cfg in owned(azure_world).values():  # deployed an hour ago...
        cfg["createdTimeUtc"] = "2026-01-01T00:00:00.000000Z"
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.containerregistry.models import GenerateCredentialsParameters

    client = ContainerRegistryManagementClient(DefaultAzureCredential(), SUBSCRIPTION)
    token_id = client.tokens.get(RESOURCE_GROUP, ACR, f"{PREFIX}-v1").id
    client.registries.begin_generate_credentials(  # ...and someone regenerated password1 now
        RESOURCE_GROUP, ACR, GenerateCredentialsParameters(token_id=token_id, name="password1")).result()
    assert azure_world.provider().read_snapshot(azure_world.desired()).registries["workspace"].credential_version \
        == "token:v2"


@BOTH_PASSWORD_MODES
def test_passwords_come_from_the_store_and_a_lost_one_is_a_planned_rotation(azure_world: AzureWorld) -> None:
    """The password of token v1 is kept in the hub's password store, never read back from the deployments. When
    it is lost (the store device deleted), it is never generated again, which would cut off the devices that
    use it: the plan moves to token v2, a visible rotation."""
    from reconciler.providers.azure.password_store import TAG, store_device_id

    azure_world.apply(kinds=DEPLOYMENTS)
    store = azure_world.hub.devices[store_device_id("prod")]
    assert store.tags[TAG]["workspace"]["password"] == token_password(azure_world, f"{PREFIX}-v1")
    assert not store.is_edge and store.identity["status"] == "disabled"
    del azure_world.hub.devices[store_device_id("prod")]
    changes = deployment_changes(azure_world)
    assert [(c.action, c.key.name) for c in changes] == [(Action.REPLACE, "iris-base")]
    assert f"registryCredentials.workspace.username '{PREFIX}-v1' -> '{PREFIX}-v2'" in changes[0].reason
    password = token_password(azure_world, f"{PREFIX}-v1")
    azure_world.apply(kinds=DEPLOYMENTS)
    assert list(azure_world.registry.tokens) == [f"{PREFIX}-v2"]  # v1 deleted with the last deployment using it
    base = next(cfg for cid, cfg in owned(azure_world).items() if cid.startswith("iris-base-"))
    assert credentials_in(base)["workspace"]["password"] == token_password(azure_world, f"{PREFIX}-v2") != password
    generated = [json.loads(r.body)["tokenId"].rsplit("/", 1)[-1]
                 for r in azure_world.emulator.log.requests("POST", "management.azure.com", "generateCredentials")]
    assert generated == [f"{PREFIX}-v1", f"{PREFIX}-v2"]  # once per token, never again
    assert not deployment_changes(azure_world)


@BOTH_PASSWORD_MODES
def test_a_truncated_listing_never_regenerates_the_password(azure_world: AzureWorld) -> None:
    """100 ADM configurations created first fill the hub's listing (it returns 100, whatever ``top`` asks):
    our deployments are never listed. A plan then sees none of them; the apply finds them and must not
    generate the token's password again (the devices pull with it)."""
    iothub.seed_adm_configurations(azure_world.emulator.state, 100, hub=HUB)
    azure_world.apply(kinds=DEPLOYMENTS)
    assert len(owned(azure_world)) == 2
    provider = azure_world.provider()
    assert provider.hub.list_configurations().may_be_truncated
    etags = {cid: cfg["etag"] for cid, cfg in owned(azure_world).items()}
    azure_world.apply(provider, kinds=DEPLOYMENTS)  # plans creates of what it cannot see; the creates find them
    assert {cid: cfg["etag"] for cid, cfg in owned(azure_world).items()} == etags
    assert len(azure_world.arm_calls("POST", "generateCredentials")) == 1
    base = next(cfg for cid, cfg in owned(azure_world).items() if cid.startswith("iris-base-"))
    assert credentials_in(base)["workspace"]["password"] == token_password(azure_world, f"{PREFIX}-v1")


def test_tokens_are_not_released_on_a_truncated_listing(azure_world: AzureWorld) -> None:
    """Deleting a token no deployment embeds is decided on the hub's listing: not when it may be incomplete."""
    azure_world.apply(kinds=DEPLOYMENTS)
    provider = azure_world.provider()
    provider.rotate_registry_credentials("workspace")
    iothub.seed_adm_configurations(azure_world.emulator.state, 100, hub=HUB)
    credentials = provider.adapters().credentials
    assert provider.hub.list_configurations().may_be_truncated  # the deployments embedding v1 are not listed
    credentials.release_unused("workspace", set())
    assert sorted(azure_world.registry.tokens) == [f"{PREFIX}-v1", f"{PREFIX}-v2"]
    for cid in [cid for cid in azure_world.configurations() if cid.startswith("adm-")]:
        del azure_world.hub.configurations[cid]
    assert not provider.hub.list_configurations().may_be_truncated
    credentials.release_unused("workspace", set())
    assert sorted(azure_world.registry.tokens) == [f"{PREFIX}-v2"]


@BOTH_PASSWORD_MODES
def test_admin_user_mode_embeds_the_admin_password_and_sees_regeneration(azure_world: AzureWorld) -> None:
    azure_world.edit("environment.yaml", "credentials: scopedToken", "credentials: adminUser")
    azure_world.apply(kinds=DEPLOYMENTS)
    base = next(cfg for cid, cfg in owned(azure_world).items() if cid.startswith("iris-base-"))
    credential = credentials_in(base)["workspace"]
    assert credential == {"address": f"{ACR}.azurecr.io", "username": ACR,
                          "password": azure_world.registry.passwords["password"]}
    assert not azure_world.registry.tokens and PREFIX not in azure_world.registry.scope_maps
    assert not deployment_changes(azure_world)
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient
    from azure.mgmt.containerregistry.models import RegenerateCredentialParameters

    client = ContainerRegistryManagementClient(DefaultAzureCredential(), SUBSCRIPTION)
    client.registries.regenerate_credential(RESOURCE_GROUP, ACR, RegenerateCredentialParameters(name="password"))
    changes = deployment_changes(azure_world)
    assert [(c.action, c.reason.split(": ")[-1]) for c in changes] == [(Action.REPLACE, "registry credentials rotated")]


def test_a_disabled_admin_user_is_an_error_and_is_never_enabled(azure_world: AzureWorld) -> None:
    azure_world.edit("environment.yaml", "credentials: scopedToken", "credentials: adminUser")
    azure_world.registry.admin_user_enabled = False
    with pytest.raises(PermanentProviderError) as raised:
        azure_world.plan()
    message = str(raised.value)
    assert "admin user of this registry is disabled" in message and "scopedToken" in message
    assert f"az acr update --name {ACR} --admin-enabled true" in message
    assert azure_world.registry.admin_user_enabled is False
    assert not azure_world.arm_calls("PATCH") and not azure_world.arm_calls("POST", "listCredentials")


def test_the_workspace_registry_is_used_when_acr_is_omitted(azure_world: AzureWorld) -> None:
    azure_world.edit("environment.yaml", "      acr: contosoedgeprod\n", "")
    snapshot = azure_world.provider().read_snapshot(azure_world.desired())
    assert snapshot.registries["workspace"].address == f"{ACR}.azurecr.io"


# --------------------------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------------------------


@BOTH_PASSWORD_MODES
def test_no_secret_in_snapshots_plans_logs_or_errors(azure_world: AzureWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    azure_world.emulator.faults.add(host=r".*\.azure-devices\.net", status=503, retry_after=0, every=3)
    provider = azure_world.provider()
    azure_world.apply(provider, kinds=DEPLOYMENTS)
    password = token_password(azure_world, f"{PREFIX}-v1")
    assert any(password in r.body.decode() for r in azure_world.hub_requests("PUT"))  # it went to the hub only
    azure_world.edit("deployments.yaml", "MODEL_NAME: iris-classifier", "MODEL_NAME: changed")
    plan = azure_world.plan(provider)
    snapshot = provider.read_snapshot(azure_world.desired(), health=True)
    saved_plan = json.dumps(plan_to_dict(plan, str(azure_world.env_dir)))
    texts = [repr(snapshot), repr(plan), saved_plan, repr(provider.hub.access), repr(provider.stats)]
    # A failure whose answer echoes the content back: the message must not carry it.
    azure_world.emulator.faults.clear()
    azure_world.emulator.faults.add(host=r".*\.azure-devices\.net", method="PUT", status=400,
                                    code=f"Bad content \"password\": \"{password}\" {CONNECTION_STRING}")
    with pytest.raises(ProviderError) as raised:
        azure_world.apply(provider, kinds=DEPLOYMENTS)
    texts += [str(raised.value), repr(raised.value)]
    azure_world.emulator.faults.clear()
    azure_world.emulator.faults.add(host=r".*\.azure-devices\.net", status=401)
    with pytest.raises(PermanentProviderError) as unauthorised:
        azure_world.provider().read_snapshot(azure_world.desired())
    assert "check the credentials" in str(unauthorised.value)
    texts += [str(unauthorised.value), caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    for secret in (password, HUB_KEY, CONNECTION_STRING, CLIENT_SECRET):
        assert not [text for text in texts if secret in text], secret


def test_missing_or_wrong_connection_string_names_the_variable(azure_world: AzureWorld,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOTHUB_CONNECTION_STRING")
    with pytest.raises(PermanentProviderError, match="IOTHUB_CONNECTION_STRING is not set"):
        azure_world.provider().read_snapshot(azure_world.desired())
    monkeypatch.setenv("IOTHUB_CONNECTION_STRING", CONNECTION_STRING.replace(HUB, "other.azure-devices.net"))
    with pytest.raises(PermanentProviderError, match="is for the hub other.azure-devices.net") as raised:
        azure_world.provider().read_snapshot(azure_world.desired())
    assert HUB_KEY not in str(raised.value)
    monkeypatch.setenv("IOTHUB_CONNECTION_STRING", "garbage-" + HUB_KEY)
    with pytest.raises(PermanentProviderError, match="HostName, SharedAccessKeyName, SharedAccessKey missing") as bad:
        azure_world.provider().read_snapshot(azure_world.desired())
    assert HUB_KEY not in str(bad.value)


def test_without_a_connection_string_the_hub_is_reached_with_the_azure_credential(azure_world: AzureWorld) -> None:
    azure_world.edit("environment.yaml", "      connectionString:\n        fromEnv: IOTHUB_CONNECTION_STRING\n", "")
    azure_world.apply(kinds=DEPLOYMENTS)
    assert len(owned(azure_world)) == 2
    authorizations = {r.headers["authorization"].split()[0] for r in azure_world.hub_requests()}
    assert authorizations == {"Bearer"}


def test_a_refused_azure_credential_says_to_check_the_credentials(azure_world: AzureWorld) -> None:
    azure_world.emulator.state.service("aad")["clients"] = {"edge-reconciler-ci": "the-right-secret"}
    with pytest.raises(PermanentProviderError) as raised:
        azure_world.provider().read_snapshot(azure_world.desired())
    message = str(raised.value)
    assert message.startswith("registry workspace (ACR contosoedgeprod): no Azure token could be obtained")
    assert "check the credentials" in message and CLIENT_SECRET not in message


def test_validate_and_imports_do_not_load_azure_sdks() -> None:
    code = ("import sys, reconciler.providers.azure.provider, reconciler.providers.azure.lock;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'azureml', 'msrest')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------------------------------
# Device counts and health
# --------------------------------------------------------------------------------------------------------------


def test_count_devices_counts_edge_devices_only(azure_world: AzureWorld) -> None:
    iothub.seed_devices(azure_world.emulator.state, [("leaf-1", {"environment": "prod"})], hub=HUB, edge=False)
    provider = azure_world.provider()
    with provider.lock("me"):
        assert provider.count_devices("tags.environment='prod'") == 3
        assert provider.count_devices("tags.environment='prod' AND tags.site='a'") == 2
        assert provider.count_devices("deviceId = 'nope'") == 0
    queries = [json.loads(r.body)["query"] for r in azure_world.hub_requests("POST", "/devices/query")]
    assert queries[0] == ("SELECT COUNT() AS numberOfDevices FROM devices "
                          "WHERE capabilities.iotEdge = true AND (tags.environment='prod')")


def test_health_reports_metrics_and_shadowing_deployments(azure_world: AzureWorld) -> None:
    azure_world.apply(kinds=DEPLOYMENTS)
    unmanaged_base(azure_world, "portal-override", "tags.site='b'", 50)  # wins on cam-b1
    unmanaged_base(azure_world, "portal-elsewhere", "tags.environment='staging'", 90)  # no overlap
    iothub.set_device_report(azure_world.emulator.state, ["cam-a2"], "failed", hub=HUB)
    azure_world.pass_evaluation_cycle()
    azure_world.emulator.reset_log()
    snapshot = azure_world.provider().read_snapshot(azure_world.desired(), health=True)
    health = {d.name: d.health for d in snapshot.deployments}
    base = health["iris-base"]
    assert base is not None
    assert (base.targeted, base.applied, base.succeeded, base.failed) == (3, 2, 1, 1)
    assert base.shadowed_by == ("portal-override",)
    sensor = health["iris-site-a-sensor"]
    assert sensor is not None and sensor.shadowed_by == ()
    # One count query per (ours, higher-priority base) pair, only for ours not applied everywhere.
    assert len(azure_world.emulator.calls("POST", HUB, "/devices/query")) == 2
    with Engine(azure_world.env_dir) as engine:
        report = engine.drift()
    assert [(i.resource, i.category) for i in report.items if i.resource.startswith("deployment/")] == [
        ("deployment/iris-base", "shadowed")]


def test_health_without_figures_in_the_listing_costs_one_read_per_owned_deployment(azure_world: AzureWorld) -> None:
    """The real hub may list configurations with empty ``systemMetrics.results`` (not evaluated yet): the
    provider reads each of its own deployments once more (never 4 count queries each: IoT Hub allows 20
    queries a minute per unit), and leaves out what has no figures (not evaluated yet, never zeros)."""
    azure_world.apply(kinds=DEPLOYMENTS)
    unmanaged_base(azure_world, "portal-override", "tags.site='b'", 50)
    iothub.set_device_report(azure_world.emulator.state, ["cam-a2"], "failed", hub=HUB)
    hub = azure_world.provider().hub
    assert hub.health(hub.list_configurations()) == {}  # none evaluated yet: one read of each of ours says so
    azure_world.pass_evaluation_cycle()
    configs = hub.list_configurations()
    listed = hub.health(configs)
    for cfg in configs:
        cfg.system_metrics.results = {}
    azure_world.emulator.reset_log()
    reread = hub.health(configs)
    assert "portal-override" not in reread  # not ours: not read again, not evaluated
    assert {k: v for k, v in reread.items()} == {k: v for k, v in listed.items() if k != "portal-override"}
    base_id = next(k for k in listed if k.startswith("iris-base-"))
    assert (reread[base_id].targeted, reread[base_id].failed) == (3, 1)
    assert len(azure_world.hub_requests("GET", "/configurations/")) == 2  # one read per owned deployment
    # The shadowing pair was counted by the first read: a run counts each condition once.
    assert azure_world.hub_requests("POST", "/devices/query") == []


def test_device_counts_are_batched_and_kept_within_the_query_budget(azure_world: AzureWorld) -> None:
    """More conditions than pages of edge device twins: the twins are read once and every condition is
    evaluated on them; past the budget, counts are unknown instead of throttled."""
    iothub.set_reported_properties(azure_world.emulator.state, "cam-a1", {"model": "4000x"}, hub=HUB)
    hub = azure_world.provider().hub
    conditions = ["tags.environment='prod'", "tags.site='a'", "tags.site='b'", "deviceId='cam-a1'",
                  "tags.environment='prod' AND NOT (tags.site='a')", "properties.reported.model='4000x'"]
    azure_world.emulator.reset_log()
    counts = hub.count_many(conditions)
    one_by_one = {c: azure_world.provider().hub.count_devices(c) for c in conditions}
    assert counts == one_by_one and counts["tags.environment='prod'"] == 3
    assert counts["properties.reported.model='4000x'"] == 1
    queries = [json.loads(r.body)["query"] for r in azure_world.hub_requests("POST", "/devices/query")]
    assert queries[:2] == ["SELECT COUNT() AS numberOfDevices FROM devices WHERE capabilities.iotEdge = true",
                           "SELECT deviceId, tags, properties.reported AS reported FROM devices "
                           "WHERE capabilities.iotEdge = true"]  # what target conditions may read, no more
    assert hub.counter.spent == 2

    thrifty = azure_world.provider().hub
    thrifty.query_budget = 1
    assert thrifty.count_many(conditions[:1]) == {conditions[0]: 3}
    assert thrifty.count_many(conditions[1:3]) == {conditions[1]: None, conditions[2]: None}


# --------------------------------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------------------------------


def lock_record(world: AzureWorld) -> LockRecord:
    record = LockRecord.from_status_reason(world.hub.devices[lock_device_id("prod")].identity["statusReason"])
    assert record is not None
    return record


def test_the_lock_is_held_until_released(azure_world: AzureWorld) -> None:
    first, second = azure_world.provider(), azure_world.provider()
    with first.lock("alice@ci GitHub run 1"):
        device = azure_world.hub.devices[lock_device_id("prod")]
        record = lock_record(azure_world)
        assert record.holder == "alice@ci GitHub run 1" and len(record.lock_id) == 16
        assert not device.is_edge and device.identity["status"] == "disabled"
        with pytest.raises(LockHeld) as raised, second.lock("bob@ci GitHub run 2"):
            pytest.fail("two holders")
        message = str(raised.value)
        assert "alice@ci GitHub run 1" in message and f"expires {record.expires}" in message
        assert f"lock id {record.lock_id}" in message
        assert f"reconciler force-unlock <ENV_DIR> {record.lock_id}" in message
    assert lock_device_id("prod") not in azure_world.hub.devices
    with second.lock("bob@ci GitHub run 2"):
        assert lock_record(azure_world).holder == "bob@ci GitHub run 2"


def test_an_expired_lock_is_taken_over_and_its_old_holder_stops(azure_world: AzureWorld) -> None:
    slow = azure_world.provider(lock_ttl=timedelta(seconds=1))
    fast = azure_world.provider()
    with slow.lock("slow run") as held:
        import time

        time.sleep(1.2)
        with fast.lock("fast run"):
            assert lock_record(azure_world).holder == "fast run"
            takeover = azure_world.hub_requests("PUT", "/devices/edge-reconciler-lock")[-1]
            assert takeover.headers["if-match"].startswith('"') and takeover.headers["if-match"] != '"*"'
            with pytest.raises(LockHeld, match="taken over by fast run"):
                held.renew_if_needed()  # what the engine does before each change
        assert lock_device_id("prod") not in azure_world.hub.devices
    assert lock_device_id("prod") not in azure_world.hub.devices


def test_a_lock_device_names_its_holder_and_expires(azure_world: AzureWorld) -> None:
    from azure.iot.hub import IoTHubRegistryManager

    manager = IoTHubRegistryManager.from_connection_string(CONNECTION_STRING)
    manager.create_device_with_sas(lock_device_id("prod"), None, None, "disabled",
                                   status_reason="2999-01-01T00:00:00+00:00|abc|2026-01-01T00:00:00+00:00|crashed run")
    with pytest.raises(LockHeld, match="crashed run since 2026-01-01T00:00:00.*lock id abc"), \
            azure_world.provider().lock("me"):
        pass
    manager.delete_device(lock_device_id("prod"))
    manager.create_device_with_sas(lock_device_id("prod"), None, None, "disabled",
                                   status_reason="2000-01-01T00:00:00+00:00|abc|1999-12-31T00:00:00+00:00|dead run")
    with azure_world.provider().lock("me"):
        assert lock_record(azure_world).holder == "me"


# --------------------------------------------------------------------------------------------------------------
# Writes whose answer is lost: the hub acts, the answer never arrives
# --------------------------------------------------------------------------------------------------------------


def test_a_lock_create_whose_answer_is_lost_is_held_by_its_run_not_refused(azure_world: AzureWorld) -> None:
    """The defect: the repeat of the create got 409 and the run reported its own lock as another's, which then
    blocked every apply for the lock's lifetime (2 h)."""
    lost = azure_world.emulator.faults.lose_answers(method="PUT", path="/devices/edge-reconciler-lock", times=1)
    with azure_world.provider().lock("me"):
        assert lock_record(azure_world).holder == "me"
    assert lost.injected == 1
    assert lock_device_id("prod") not in azure_world.hub.devices
    with azure_world.provider().lock("the next run"):
        pass


def test_a_lock_release_whose_answer_is_lost_leaves_no_lock(azure_world: AzureWorld) -> None:
    lost = azure_world.emulator.faults.lose_answers(method="DELETE", path="/devices/edge-reconciler-lock", times=1)
    with azure_world.provider().lock("me"):
        pass
    assert lost.injected == 1 and lock_device_id("prod") not in azure_world.hub.devices


def test_a_lock_takeover_and_renewal_whose_answers_are_lost_keep_the_lock(azure_world: AzureWorld) -> None:
    from azure.iot.hub import IoTHubRegistryManager

    IoTHubRegistryManager.from_connection_string(CONNECTION_STRING).create_device_with_sas(
        lock_device_id("prod"), None, None, "disabled",
        status_reason="2000-01-01T00:00:00+00:00|abc|1999-12-31T00:00:00+00:00|dead run")
    faults = azure_world.emulator.faults
    takeover = faults.lose_answers(method="PUT", path="/devices/edge-reconciler-lock", skip=1, times=1)
    provider = azure_world.provider(lock_ttl=timedelta(seconds=2))
    with provider.lock("me") as held:
        assert lock_record(azure_world).holder == "me" and takeover.injected == 1
        renewal = faults.lose_answers(method="PUT", path="/devices/edge-reconciler-lock", times=1)
        import time

        time.sleep(1.1)  # past half the time to live: the next change renews first
        held.renew_if_needed()
        assert lock_record(azure_world).holder == "me" and renewal.injected == 1
    assert lock_device_id("prod") not in azure_world.hub.devices


def test_force_unlock_removes_only_the_named_lock(azure_world: AzureWorld) -> None:
    from reconciler.providers.azure.lock import HubLock

    holder = azure_world.provider()
    with holder.lock("a run that died"):
        lock_id = lock_record(azure_world).lock_id
        other = HubLock(azure_world.provider().hub, "prod", "me")
        with pytest.raises(PermanentProviderError, match=f"lock id {lock_id}.*not lock id 0000; nothing was removed"):
            other.force_unlock("0000")
        assert lock_device_id("prod") in azure_world.hub.devices
        info = other.force_unlock(lock_id)
        assert info.holder == "a run that died" and lock_device_id("prod") not in azure_world.hub.devices
    with pytest.raises(PermanentProviderError, match="not locked"):
        other.force_unlock(lock_id)


# --------------------------------------------------------------------------------------------------------------
# The registry's login server is what ARM says it is
# --------------------------------------------------------------------------------------------------------------


def test_a_registry_whose_login_server_is_not_name_azurecr_io(azure_world: AzureWorld) -> None:
    """A registry with a domain name label (or in a sovereign cloud) is not at ``<name>.azurecr.io``: images,
    pull credentials and the data plane calls all use its ``properties.loginServer``."""
    host = f"{ACR}-gbfsd8f3cwdpf4a3.azurecr.io"
    azure_world.registry.host = host
    with Engine(azure_world.env_dir) as engine:
        engine.apply()
    with Engine(azure_world.env_dir) as engine:
        assert not engine.plan().has_changes
    base = next(cfg for cid, cfg in owned(azure_world).items() if cid.startswith("iris-base-"))
    assert credentials_in(base)["workspace"]["address"] == host
    modules = base["content"]["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
    assert modules["scorer"]["settings"]["image"].startswith(f"{host}/iris-scorer:")
    assert azure_world.emulator.calls(host=host) and not azure_world.emulator.calls(host=f"{ACR}.azurecr.io")


def test_model_files_changed_since_the_plan_are_not_registered(azure_world: AzureWorld) -> None:
    """The apply path checks the files against the plan on Azure too (only the local backend did)."""
    provider = azure_world.provider()
    plan = azure_world.plan(provider)
    model_change = next(c for c in plan.changes if c.key.kind is Kind.MODEL)
    weights = azure_world.env_dir.parents[1] / "models" / "iris" / "model" / "model.json"
    weights.write_text(weights.read_text().replace('"classes"', '"comment": "after the plan", "classes"', 1))
    azure_world.emulator.reset_log()
    with pytest.raises(PermanentProviderError, match="model files changed since the plan was made"):
        apply_change(provider, model_change, azure_world.desired().environment)
    assert not [c for c in azure_world.emulator.calls("POST") if c.path.endswith("/models")]


@pytest.mark.parametrize("environment", ["p", "prod", "a" * 64, "-".join(["x"] * 32)[:63]])
@pytest.mark.parametrize("registry", ["r", "workspace", "w" * 40])
def test_generated_token_names_stay_valid_after_100000_rotations(environment: str, registry: str) -> None:
    """ACR takes 5 to 50 letters, digits and '-' (the SDK checks it before sending): every name the provider
    makes must fit, for the longest environment and registry names the schemas allow, up to version 999,999."""
    import re

    prefix = acr_module.token_prefix(environment, registry)
    for version in (1, 99_999, 100_000, 999_999):
        name = acr_module.token_name(prefix, version)
        assert re.fullmatch(r"[a-zA-Z0-9-]{5,50}", name), name
        assert acr_module.token_version(prefix, name) == version
    assert re.fullmatch(r"[a-zA-Z0-9-]{5,50}", prefix)
    with pytest.raises(PermanentProviderError, match="out of range"):
        acr_module.token_name(prefix, 1_000_000)
