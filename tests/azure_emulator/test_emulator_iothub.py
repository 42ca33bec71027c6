"""The IoT Hub emulator driven by the real, unpatched azure-iot-hub 2.7.0 clients.

The clients are built from a normal connection string for ``emuhub.azure-devices.net``; they
reach the emulator only through ``HTTPS_PROXY`` + the emulator's CA (``AzureEmulator.environ``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import (
    Configuration,
    ConfigurationContent,
    ConfigurationMetrics,
    ConfigurationQueriesTestInput,
    QuerySpecification,
    Twin,
)
from msrest.exceptions import HttpOperationError

from . import iothub
from .server import AzureEmulator

HUB = "emuhub.azure-devices.net"
KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
CONNECTION_STRING = f"HostName={HUB};SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
API = "?api-version=2021-04-12"
SAS = {"Authorization": "SharedAccessSignature sr=emuhub.azure-devices.net&sig=x&se=9999999999&skn=iothubowner"}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def running() -> Iterator[AzureEmulator]:
    with AzureEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(running: AzureEmulator) -> Iterator[AzureEmulator]:
    running.reset()
    with running.environ():
        yield running
    assert running.errors == [], running.errors[0] if running.errors else ""


@pytest.fixture
def cfg_mgr(emu: AzureEmulator) -> IoTHubConfigurationManager:
    return IoTHubConfigurationManager.from_connection_string(CONNECTION_STRING)


@pytest.fixture
def reg_mgr(emu: AzureEmulator) -> IoTHubRegistryManager:
    return IoTHubRegistryManager.from_connection_string(CONNECTION_STRING)


def base_content(image: str = "emuacr.azurecr.io/model-server:1.0.0") -> ConfigurationContent:
    return ConfigurationContent(modules_content={
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}},
            "modules": {"modelserver": {"version": "1.0", "type": "docker", "status": "running",
                                        "restartPolicy": "always",
                                        "settings": {"image": image, "createOptions": "{}"}}},
        }},
        "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {"up": "FROM /messages/* INTO $upstream"},
                                            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
    })


def layered_content() -> ConfigurationContent:
    return ConfigurationContent(modules_content={
        "$edgeAgent": {"properties.desired.modules.sidecar": {
            "version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
            "settings": {"image": "emuacr.azurecr.io/sidecar:2", "createOptions": "{}"}}},
    })


def deployment(cid: str, target: str = "tags.env='prod'", priority: int = 10,
               content: ConfigurationContent | None = None, **kw) -> Configuration:
    return Configuration(id=cid, schema_version="1.0", labels={"managed-by": "gitops"},
                         content=content or base_content(), target_condition=target, priority=priority, **kw)


def status_and_code(exc: pytest.ExceptionInfo[HttpOperationError]) -> tuple[int, str]:
    return exc.value.response.status_code, exc.value.response.headers.get("iothub-errorcode", "")


# ------------------------------------------------------------------------------ configurations


def test_configuration_create_get_list_delete(emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    created = cfg_mgr.create_configuration(deployment("model-server-abc123"))
    assert created.etag == "MQ=="
    assert created.created_time_utc is not None and created.created_time_utc == created.last_updated_time_utc
    assert created.content.modules_content["$edgeAgent"]["properties.desired"]["modules"]["modelserver"]

    got = cfg_mgr.get_configuration("model-server-abc123")
    assert (got.id, got.priority, got.target_condition, got.labels) == (
        "model-server-abc123", 10, "tags.env='prod'", {"managed-by": "gitops"})
    assert got.system_metrics.results == {}  # not evaluated yet (the evaluation cycle below)
    iothub.advance_clock(emu.state, iothub.METRICS_EVALUATION_SECONDS)
    got = cfg_mgr.get_configuration("model-server-abc123")
    assert set(got.system_metrics.results) >= {"targetedCount", "appliedCount", "reportedSuccessfulCount",
                                               "reportedFailedCount"}

    cfg_mgr.create_configuration(deployment("other-one", priority=1))
    listed = cfg_mgr.get_configurations()
    assert [c.id for c in listed] == ["model-server-abc123", "other-one"]
    assert [c.id for c in cfg_mgr.get_configurations(max_count=1)] == ["model-server-abc123"]

    cfg_mgr.delete_configuration("model-server-abc123")
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.get_configuration("model-server-abc123")
    assert status_and_code(exc) == (404, "ConfigurationNotFound")
    assert [c.id for c in cfg_mgr.get_configurations()] == ["other-one"]
    assert emu.calls("DELETE", HUB, "/configurations/")[0].status == 204


def test_create_existing_configuration_is_a_conflict(cfg_mgr: IoTHubConfigurationManager) -> None:
    cfg_mgr.create_configuration(deployment("dup"))
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.create_configuration(deployment("dup", priority=99))
    assert exc.value.response.status_code == 409
    assert cfg_mgr.get_configuration("dup").priority == 10


def test_update_mutable_fields_with_quoted_if_match(emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    created = cfg_mgr.create_configuration(deployment("ms-v1"))
    fresh = deployment("ms-v1", target="tags.env='prod' OR tags.env='canary'", priority=20,
                       metrics=ConfigurationMetrics(queries={"ok": "SELECT deviceId FROM devices WHERE tags.env='p'"}))
    updated = cfg_mgr.protocol.configuration.create_or_update("ms-v1", fresh, if_match=f'"{created.etag}"')
    assert (updated.etag, updated.priority) == ("Mg==", 20)
    assert updated.target_condition == "tags.env='prod' OR tags.env='canary'"
    assert updated.created_time_utc == created.created_time_utc
    assert updated.last_updated_time_utc > created.last_updated_time_utc
    assert emu.log.requests("PUT", HUB, "/configurations/ms-v1")[-1].headers["if-match"] == '"MQ=="'

    # A stale etag is refused, and so is any change of content (even with the right etag).
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.protocol.configuration.create_or_update("ms-v1", fresh, if_match='"MQ=="')
    assert status_and_code(exc) == (412, "PreconditionFailed")
    changed = deployment("ms-v1", content=base_content(image="emuacr.azurecr.io/model-server:2.0.0"))
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.protocol.configuration.create_or_update("ms-v1", changed, if_match='"Mg=="')
    assert status_and_code(exc) == (400, "CannotModifyImmutableConfigurationContent")
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.protocol.configuration.create_or_update("ms-v1", changed, if_match='"*"')
    assert status_and_code(exc) == (400, "CannotModifyImmutableConfigurationContent")
    image = cfg_mgr.get_configuration("ms-v1").content.modules_content["$edgeAgent"]["properties.desired"][
        "modules"]["modelserver"]["settings"]["image"]
    assert image.endswith(":1.0.0")


def test_plain_update_configuration_reproduces_the_409(emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    cfg_mgr.create_configuration(deployment("ms-v1"))
    current = cfg_mgr.get_configuration("ms-v1")
    current.target_condition = "tags.env='test'"
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.update_configuration(current, current.etag)
    assert exc.value.response.status_code == 409
    assert emu.log.requests("PUT", HUB, "/configurations/ms-v1")[-1].headers["if-match"] == "MQ=="  # unquoted
    assert cfg_mgr.get_configuration("ms-v1").target_condition == "tags.env='prod'"

    # Passing a pre-quoted etag works even though the body carries the read-only fields.
    updated = cfg_mgr.update_configuration(current, f'"{current.etag}"')
    assert (updated.target_condition, updated.etag) == ("tags.env='test'", "Mg==")


def test_configuration_validation_rules(cfg_mgr: IoTHubConfigurationManager) -> None:
    cases = [
        (deployment("bad-in", target="tags.env IN ['a','b']"), 400, "InvalidConfigurationTargetCondition"),
        (deployment("bad-quote", target='tags.env="prod"'), 400, "InvalidConfigurationTargetCondition"),
        (deployment("bad-prop", target="capabilities.iotEdge=true"), 400, "InvalidConfigurationTargetCondition"),
        (deployment("Upper-Case"), 400, "ArgumentInvalid"),
        (deployment("neg", priority=-1), 400, "ArgumentInvalid"),
        (deployment("many-metrics", metrics=ConfigurationMetrics(
            queries={f"m{i}": "SELECT deviceId FROM devices" for i in range(6)})), 400, "ArgumentInvalid"),
        (deployment("no-hub", content=ConfigurationContent(modules_content={
            "$edgeAgent": {"properties.desired": {}}})), 400, "InvalidConfigurationContent"),
    ]
    for cfg, status, code in cases:
        with pytest.raises(HttpOperationError) as exc:
            cfg_mgr.create_configuration(cfg)
        assert status_and_code(exc) == (status, code), cfg.id
    assert cfg_mgr.get_configurations() == []

    result = cfg_mgr.test_configuration_queries(ConfigurationQueriesTestInput(
        target_condition="tags.env IN ['a']", custom_metric_queries={"ok": "SELECT deviceId FROM devices",
                                                                    "bad": "SELEC nothing"}))
    assert "IN" in result.target_condition_error
    assert set(result.custom_metric_query_errors) == {"bad"}
    ok = cfg_mgr.test_configuration_queries(ConfigurationQueriesTestInput(
        target_condition="tags.env='prod' AND NOT deviceId='x' AND IS_DEFINED(tags.site)"))
    assert not ok.target_condition_error


def test_hub_limit_of_100_configurations(emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    hub = iothub.get_hub(emu.state, HUB)
    for i in range(iothub.MAX_CONFIGURATIONS):  # fill the hub without 100 round trips
        hub.configurations[f"c{i}"] = {"id": f"c{i}", "content": {"modulesContent": {}}, "etag": "MQ==",
                                       "createdTimeUtc": "2020-01-01T00:00:00.000000Z", "priority": 0,
                                       "targetCondition": "", "_seq": i, "_version": 1}
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.create_configuration(deployment("one-too-many"))
    # The documented code for this limit: 413101 ConfigurationCountLimitExceeded (troubleshoot-error-codes).
    assert exc.value.response.status_code == 413
    assert exc.value.response.headers["iothub-errorcode"] == "ConfigurationCountLimitExceeded"
    assert "ErrorCode:ConfigurationCountLimitExceeded;" in exc.value.response.json()["Message"]


def _fill(hub: iothub.Hub, kind: str, count: int, start: int = 0) -> None:
    """``count`` configurations of ``kind`` ("edge" or "adm") straight into the hub's state, in creation order."""
    content = {"modulesContent": {}} if kind == "edge" else {"deviceContent": {"properties.desired.x": 1}}
    for i in range(start, start + count):
        hub.config_seq += 1
        hub.configurations[f"{kind}-{i}"] = {
            "id": f"{kind}-{i}", "content": content, "etag": "MQ==", "createdTimeUtc": "2020-01-01T00:00:00.000000Z",
            "priority": 0, "targetCondition": "", "_seq": hub.config_seq, "_version": 1}


def test_edge_deployments_and_adm_configurations_have_separate_quotas(
        emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    hub = iothub.get_hub(emu.state, HUB)
    _fill(hub, "adm", iothub.MAX_ADM_CONFIGURATIONS)
    _fill(hub, "edge", iothub.MAX_EDGE_DEPLOYMENTS - 1)
    cfg_mgr.create_configuration(deployment("the-100th-deployment"))  # 100 ADM configurations take no edge slot
    with pytest.raises(HttpOperationError) as edge:
        cfg_mgr.create_configuration(deployment("one-too-many"))
    assert status_and_code(edge) == (413, "ConfigurationCountLimitExceeded")
    adm = Configuration(id="adm-extra", schema_version="1.0", target_condition="tags.env='prod'", priority=1,
                        content=ConfigurationContent(device_content={"properties.desired.x": 1}))
    with pytest.raises(HttpOperationError) as full:
        cfg_mgr.create_configuration(adm)
    assert status_and_code(full) == (413, "ConfigurationCountLimitExceeded")
    assert len(hub.configurations) == 200


def test_a_listing_never_returns_more_than_the_maximum_deployment_count(
        emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    """``top`` greater than the maximum is overridden (service.json): 200 configurations, 100 listed."""
    hub = iothub.get_hub(emu.state, HUB)
    _fill(hub, "adm", 100)
    _fill(hub, "edge", 100)
    assert len(cfg_mgr.get_configurations(max_count=200)) == iothub.MAX_LISTED_CONFIGURATIONS
    assert len(cfg_mgr.get_configurations()) == iothub.MAX_LISTED_CONFIGURATIONS
    assert [c.id for c in cfg_mgr.get_configurations(max_count=2)] == ["adm-0", "adm-1"]
    assert {c.id.split("-")[0] for c in cfg_mgr.get_configurations(max_count=200)} == {"adm"}  # creation order


def test_masked_passwords_in_configuration_reads(emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    content = base_content()
    settings = content.modules_content["$edgeAgent"]["properties.desired"]["runtime"]["settings"]
    settings["registryCredentials"] = {"emuacr": {"address": "emuacr.azurecr.io", "username": "tok",
                                                  "password": "s3cret"}}
    layer = layered_content()
    layer.modules_content["$edgeAgent"]["properties.desired.runtime.settings.registryCredentials.emuacr"] = {
        "address": "emuacr.azurecr.io", "username": "tok", "password": "s3cret"}
    iothub.set_password_masking(emu.state, hub=HUB)
    created = cfg_mgr.create_configuration(deployment("base", content=content))
    cfg_mgr.create_configuration(deployment("layer", content=layer))
    for cfg in [created, cfg_mgr.get_configuration("base"), *cfg_mgr.get_configurations()]:
        agent = cfg.content.modules_content["$edgeAgent"]
        entry = (agent["properties.desired"]["runtime"]["settings"]["registryCredentials"]["emuacr"]
                 if "properties.desired" in agent
                 else agent["properties.desired.runtime.settings.registryCredentials.emuacr"])
        assert entry == {"address": "emuacr.azurecr.io", "username": "tok", "password": None}
    assert "s3cret" in str(iothub.get_hub(emu.state, HUB).configurations["base"]["content"])  # kept, not shown
    got = cfg_mgr.get_configuration("base")  # its own masked content back is no change of content
    edited = Configuration(id="base", schema_version="1.0", labels={"x": "y"}, content=got.content,
                           target_condition=got.target_condition, priority=3)
    assert cfg_mgr.protocol.configuration.create_or_update("base", edited, if_match=f'"{got.etag}"').priority == 3
    iothub.set_password_masking(emu.state, False, hub=HUB)
    assert "s3cret" in str(cfg_mgr.get_configuration("base").content.modules_content)


def test_errors_have_the_hubs_shape_without_an_arm_error_object(emu: AzureEmulator,
                                                                cfg_mgr: IoTHubConfigurationManager) -> None:
    emu.faults.add(host=r".*\.azure-devices\.net", path="/configurations", status=429, retry_after=1, times=1)
    for _ in range(2):  # the injected fault, then the handler's own 404
        with pytest.raises(HttpOperationError) as exc:
            cfg_mgr.get_configuration("nope")
        body = exc.value.response.json()
        assert set(body) == {"Message", "ExceptionMessage"}
        code = exc.value.response.headers["iothub-errorcode"]
        assert body["Message"].startswith(f"ErrorCode:{code};") and code in ("ThrottlingException",
                                                                               "ConfigurationNotFound")


def test_an_unquoted_if_match_on_a_twin_is_ignored(emu: AzureEmulator, reg_mgr: IoTHubRegistryManager) -> None:
    iothub.seed_devices(emu.state, [("dev-1", {"env": "prod"})])
    url = f"https://{HUB}/twins/dev-1{API}"
    stale = requests.patch(url, json={"tags": {"site": "a"}}, headers={**SAS, "If-Match": "not-the-etag"})
    assert stale.status_code == 200 and stale.json()["tags"]["site"] == "a"  # no entity tag: no condition
    quoted = requests.patch(url, json={"tags": {"site": "b"}}, headers={**SAS, "If-Match": '"not-the-etag"'})
    assert quoted.status_code == 412 and quoted.headers["iothub-errorcode"] == "PreconditionFailed"


def test_system_metrics_follow_priorities_and_layers(emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager,
                                                     reg_mgr: IoTHubRegistryManager) -> None:
    iothub.seed_devices(emu.state, [(f"prod-{i}", {"env": "prod", "site": "a" if i < 3 else "b"}) for i in range(5)]
                        + [("dev-0", {"env": "dev"})])
    iothub.seed_devices(emu.state, [("leaf-0", {"env": "prod"})], edge=False)  # not an edge device
    iothub.set_device_report(emu.state, ["prod-4"], iothub.REPORT_FAILED)
    cfg_mgr.create_configuration(deployment("fleet", target="tags.env='prod'", priority=10))
    cfg_mgr.create_configuration(deployment("site-a", target="tags.site='a'", priority=20))
    cfg_mgr.create_configuration(deployment("sidecar", target="tags.env='prod'", priority=15,
                                            content=layered_content()))

    def results(cid: str) -> dict[str, int]:
        return cfg_mgr.get_configuration(cid).system_metrics.results

    iothub.advance_clock(emu.state, iothub.METRICS_EVALUATION_SECONDS)  # the hub evaluates them
    assert results("fleet") == {"targetedCount": 5, "appliedCount": 2, "reportedSuccessfulCount": 1,
                                "reportedFailedCount": 1}
    assert results("site-a") == {"targetedCount": 3, "appliedCount": 3, "reportedSuccessfulCount": 3,
                                 "reportedFailedCount": 0}
    # layered (priority 15) applies only where the base is "fleet" (10), not "site-a" (20)
    assert results("sidecar")["appliedCount"] == 2
    twin = reg_mgr.get_twin("prod-3")
    assert twin.additional_properties["configurations"] == {"fleet": {"status": "Applied"},
                                                            "sidecar": {"status": "Applied"}}
    agent = reg_mgr.get_module_twin("prod-3", "$edgeAgent")
    assert set(agent.properties.desired["modules"]) == {"modelserver", "sidecar"}

    # equal priority: the newest deployment wins the tie
    cfg_mgr.create_configuration(deployment("site-a-v2", target="tags.site='a'", priority=20))
    iothub.advance_clock(emu.state, iothub.METRICS_EVALUATION_SECONDS)
    assert results("site-a")["appliedCount"] == 0
    assert results("site-a-v2")["appliedCount"] == 3


def test_metrics_are_evaluated_every_five_minutes_of_the_hubs_clock(emu: AzureEmulator,
                                                                    cfg_mgr: IoTHubConfigurationManager) -> None:
    """Empty until the first evaluation, 5 minutes after the creation; then the last evaluation's figures, stale
    until the next one, whatever changed in between; an evaluation sees the hub as it was when it fell due."""
    iothub.seed_devices(emu.state, [(f"cam-{i}", {"env": "prod", "site": "a" if i < 2 else "b"}) for i in range(3)])
    metrics = ConfigurationMetrics(queries={"ok": "SELECT deviceId FROM devices WHERE tags.site = 'a'"})
    cfg_mgr.create_configuration(deployment("fleet", target="tags.site='a'", metrics=metrics))

    def figures() -> tuple[dict[str, int], dict[str, int]]:
        cfg = cfg_mgr.get_configuration("fleet")
        return cfg.system_metrics.results, cfg.metrics.results

    assert figures() == ({}, {})
    iothub.advance_clock(emu.state, iothub.METRICS_EVALUATION_SECONDS - 1)
    assert figures() == ({}, {})
    iothub.advance_clock(emu.state, 1)
    evaluated = {"targetedCount": 2, "appliedCount": 2, "reportedSuccessfulCount": 2, "reportedFailedCount": 0}
    assert figures() == (evaluated, {"ok": 2})

    # A wider condition and a failing device: the figures stay those of the last evaluation until the next one.
    live = cfg_mgr.get_configuration("fleet")
    widened = Configuration(id="fleet", schema_version="1.0", labels=live.labels, content=live.content,
                            target_condition="tags.env='prod'", priority=10, metrics=metrics)
    cfg_mgr.protocol.configuration.create_or_update("fleet", widened, if_match=f'"{live.etag}"')
    iothub.advance_clock(emu.state, 200)
    iothub.set_device_report(emu.state, ["cam-2"], iothub.REPORT_FAILED)
    assert figures() == (evaluated, {"ok": 2})
    # The next evaluation falls due; a device that fails after it is not in it.
    iothub.advance_clock(emu.state, 100)
    iothub.set_device_report(emu.state, ["cam-1"], iothub.REPORT_FAILED)
    assert figures() == ({"targetedCount": 3, "appliedCount": 3, "reportedSuccessfulCount": 2,
                          "reportedFailedCount": 1}, {"ok": 2})
    assert cfg_mgr.get_configuration("fleet").last_updated_time_utc > live.created_time_utc

    # The hub's clock can be pinned (as tests pin the product's), and a cycle-less hub computes on every read.
    iothub.set_clock(emu.state, live.created_time_utc + timedelta(seconds=3 * iothub.METRICS_EVALUATION_SECONDS))
    assert figures()[0]["reportedFailedCount"] == 2
    iothub.set_device_report(emu.state, ["cam-0"], iothub.REPORT_FAILED)
    iothub.set_metrics_evaluation(emu.state, None)
    assert figures()[0]["reportedFailedCount"] == 3


def test_apply_configuration_on_edge_device(cfg_mgr: IoTHubConfigurationManager, reg_mgr: IoTHubRegistryManager,
                                            emu: AzureEmulator) -> None:
    reg_mgr.create_device_with_sas("edge-1", None, None, "enabled", iot_edge=True)
    assert cfg_mgr.apply_configuration_on_edge_device("edge-1", base_content()) is None
    assert emu.calls("POST", HUB, "/devices/edge-1/applyConfigurationContent")[0].status == 204
    agent = reg_mgr.get_module_twin("edge-1", "$edgeAgent")
    assert agent.properties.desired["modules"]["modelserver"]["settings"]["image"].endswith(":1.0.0")


# ------------------------------------------------------------------------------ devices, twins, query


def test_device_identity_and_twin_tag_patch(emu: AzureEmulator, reg_mgr: IoTHubRegistryManager) -> None:
    device = reg_mgr.create_device_with_sas("edge-1", None, None, "enabled", iot_edge=True)
    assert device.capabilities.iot_edge and device.authentication.symmetric_key.primary_key
    with pytest.raises(HttpOperationError) as exc:
        reg_mgr.create_device_with_sas("edge-1", None, None, "enabled", iot_edge=True)
    assert status_and_code(exc) == (409, "DeviceAlreadyExists")

    twin = reg_mgr.get_twin("edge-1")
    assert twin.tags is None
    patched = reg_mgr.update_twin("edge-1", Twin(tags={"env": "prod", "site": {"name": "a", "rack": 3}}), twin.etag)
    assert patched.tags == {"env": "prod", "site": {"name": "a", "rack": 3}}
    assert patched.etag != twin.etag
    assert emu.log.requests("PATCH", HUB, "/twins/edge-1")[-1].headers["if-match"] == f'"{twin.etag}"'

    merged = reg_mgr.update_twin("edge-1", Twin(tags={"site": {"rack": None}, "owner": "ops"}), patched.etag)
    assert merged.tags == {"env": "prod", "site": {"name": "a"}, "owner": "ops"}
    with pytest.raises(HttpOperationError) as exc:
        reg_mgr.update_twin("edge-1", Twin(tags={"env": "dev"}), twin.etag)  # stale etag
    assert status_and_code(exc) == (412, "PreconditionFailed")
    with pytest.raises(HttpOperationError) as exc:
        reg_mgr.update_twin("edge-1", Twin(tags={"bad.key": 1}))
    assert exc.value.response.status_code == 400
    assert reg_mgr.get_twin("edge-1").tags["env"] == "prod"

    reg_mgr.delete_device("edge-1")
    with pytest.raises(HttpOperationError) as exc:
        reg_mgr.get_device("edge-1")
    assert status_and_code(exc) == (404, "DeviceNotFound")


def test_paged_device_query(emu: AzureEmulator, reg_mgr: IoTHubRegistryManager) -> None:
    iothub.seed_devices(emu.state, [(f"dev-{i:04d}", {"env": "prod" if i % 5 else "dev"}) for i in range(250)])
    spec = QuerySpecification(query="SELECT * FROM devices WHERE tags.env = 'prod' OR tags.env = 'dev'")
    pages, token = [], None
    while True:
        result = reg_mgr.query_iot_hub(spec, token, 100)
        pages.append([twin.device_id for twin in result.items])
        token = result.continuation_token
        if not token:
            break
    assert [len(p) for p in pages] == [100, 100, 50]
    ids = [i for p in pages for i in p]
    assert len(set(ids)) == 250 and ids == sorted(ids)
    assert result.type == "twin"
    sent = emu.log.requests("POST", HUB, "/devices/query")
    assert [r.headers.get("x-ms-max-item-count") for r in sent] == ["100"] * 3
    assert "x-ms-continuation" not in sent[0].headers and sent[1].headers["x-ms-continuation"]

    count = reg_mgr.protocol.query.get_twins(
        QuerySpecification(query="SELECT COUNT() AS numberOfDevices FROM devices WHERE tags.env = 'dev'"),
        None, None, None, True)
    assert count.response.json() == [{"numberOfDevices": 50}]
    grouped = reg_mgr.protocol.query.get_twins(
        QuerySpecification(query="SELECT tags.env AS env, COUNT() AS n FROM devices GROUP BY tags.env"),
        None, None, None, True)
    assert grouped.response.json() == [{"env": "dev", "n": 50}, {"env": "prod", "n": 200}]
    with pytest.raises(HttpOperationError) as exc:
        reg_mgr.query_iot_hub(QuerySpecification(query="SELECT * FROM nowhere"))
    assert exc.value.response.status_code == 400


def test_seeding_20000_devices_is_fast(emu: AzureEmulator, reg_mgr: IoTHubRegistryManager) -> None:
    started = time.monotonic()
    iothub.seed_devices(emu.state, [(f"d{i:05d}", {"site": f"s{i % 20}"}) for i in range(20_000)])
    result = reg_mgr.protocol.query.get_twins(
        QuerySpecification(query="SELECT COUNT() AS n FROM devices WHERE tags.site = 's7'"), None, None, None, True)
    assert result.response.json() == [{"n": 1000}]
    assert time.monotonic() - started < 10


# ------------------------------------------------------------------------------ faults, log, plain HTTP


def test_429_with_retry_after_reaches_the_client(emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    rule = emu.faults.throttle(retry_after=7, method="POST", path=r"^/configurations/testQueries")
    started = time.monotonic()
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.test_configuration_queries(ConfigurationQueriesTestInput(target_condition="*"))
    assert time.monotonic() - started < 5  # POST is never retried: the 429 surfaces at once
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "7"
    assert exc.value.response.headers["iothub-errorcode"] == "ThrottlingException"
    assert [c.status for c in emu.calls("POST", HUB)] == [429]
    assert (rule.matched, rule.injected) == (1, 1)


def test_429_on_get_is_retried_by_urllib3_when_retry_after_is_sent(
        emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager) -> None:
    """msrest's urllib3 Retry honours Retry-After for GET/PUT/DELETE: 1 + 3 attempts, then the 429 surfaces."""
    emu.faults.throttle(retry_after=1, method="GET", path=r"^/configurations")
    with pytest.raises(HttpOperationError) as exc:
        cfg_mgr.get_configurations()
    assert exc.value.response.status_code == 429
    assert [c.status for c in emu.calls("GET", HUB)] == [429] * 4
    emu.faults.clear()
    emu.reset_log()
    once = emu.faults.throttle(retry_after=0, method="GET", path=r"^/configurations", times=1)
    assert cfg_mgr.get_configurations() == []  # a single throttle is absorbed by the retry
    assert [c.status for c in emu.calls("GET", HUB)] == [429, 200]
    assert (once.matched, once.injected) == (2, 1)


def test_every_kth_and_503_faults_are_deterministic(emu: AzureEmulator) -> None:
    emu.faults.add(status=503, path=r"^/twins/", every=3)
    iothub.seed_devices(emu.state, [("d1", {})])
    with requests.Session() as session:
        statuses = [session.get(f"https://{HUB}/twins/d1{API}", headers=SAS).status_code for _ in range(6)]
    assert statuses == [200, 200, 503, 200, 200, 503]
    emu.faults.clear()
    assert requests.get(f"https://{HUB}/twins/d1{API}", headers=SAS).status_code == 200


def test_dropped_connection(emu: AzureEmulator) -> None:
    emu.faults.add(drop=True, path=r"^/twins/", times=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"https://{HUB}/twins/d1{API}", headers=SAS)
    assert emu.calls("GET", HUB)[0].status == 0


def test_a_lost_answer_comes_after_the_service_acted(emu: AzureEmulator) -> None:
    """Unlike a drop, which strikes before the service acts, ``lose_answer`` runs the route (the device is
    created) and then resets the connection: the client cannot tell the two apart."""
    rule = emu.faults.lose_answers(method="PUT|POST", path=r"^/devices/", times=1)
    body = {"deviceId": "d9", "status": "enabled"}
    with pytest.raises(requests.ConnectionError):
        requests.put(f"https://{HUB}/devices/d9{API}", json=body, headers=SAS)
    assert "d9" in iothub.get_hub(emu.state).devices
    assert [(c.status, c.lost) for c in emu.calls("PUT", HUB)] == [(200, True)]
    again = requests.put(f"https://{HUB}/devices/d9{API}", json=body, headers=SAS)
    assert again.status_code == 409 and rule.injected == 1  # what a blind repeat meets


def test_a_late_answer_arrives_after_the_client_gave_up(emu: AzureEmulator) -> None:
    emu.faults.add(late=1.5, method="DELETE", path=r"^/devices/", times=1)
    iothub.seed_devices(emu.state, [("d8", {})])
    with pytest.raises(requests.Timeout):
        requests.delete(f"https://{HUB}/devices/d8{API}", headers=SAS, timeout=0.5)
    assert "d8" not in iothub.get_hub(emu.state).devices
    assert [(c.status, c.lost) for c in emu.calls("DELETE", HUB)] == [(204, True)]


def test_request_log_counts(emu: AzureEmulator, cfg_mgr: IoTHubConfigurationManager,
                            reg_mgr: IoTHubRegistryManager) -> None:
    cfg_mgr.create_configuration(deployment("a"))
    for _ in range(3):
        cfg_mgr.get_configuration("a")
    reg_mgr.create_device_with_sas("e1", None, None, "enabled", iot_edge=True)
    assert len(emu.calls()) == len(emu.log) == 5
    assert list(emu.log)[0] == ("PUT", HUB, "/configurations/a", {"api-version": ["2021-04-12"]}, 201, False)
    assert len(emu.calls("GET")) == 3
    assert len(emu.calls(path_contains="/configurations/a")) == 4
    assert [c.status for c in emu.calls("PUT")] == [201, 200]
    assert all(c.host == HUB and c.query == {"api-version": ["2021-04-12"]} for c in emu.calls())
    assert emu.unmatched == []
    emu.reset_log()
    assert emu.calls() == []


def test_plain_requests_through_the_proxy(emu: AzureEmulator) -> None:
    iothub.seed_devices(emu.state, [("d1", {"env": "prod"})])
    response = requests.get(f"https://{HUB}/twins/d1{API}", headers=SAS)  # HTTPS_PROXY + REQUESTS_CA_BUNDLE
    assert response.status_code == 200 and response.json()["tags"] == {"env": "prod"}
    assert f"{HUB}:443" in emu.log.tunnels

    unauthenticated = requests.get(f"https://{HUB}/twins/d1{API}")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"

    # Plain HTTP straight to the port (NO_PROXY covers 127.0.0.1); the host comes from Host.
    direct = requests.get(f"{emu.url}/twins/d1{API}", headers={**SAS, "Host": HUB})
    assert direct.status_code == 200 and direct.json()["deviceId"] == "d1"

    missing = requests.get(f"https://{HUB}/no/such/api{API}", headers=SAS)
    assert missing.status_code == 404
    assert [r.path for r in emu.unmatched] == ["/no/such/api"]


def test_env_routes_only_loopback_around_the_proxy(emu: AzureEmulator) -> None:
    env = emu.env()
    assert env["HTTPS_PROXY"] == env["https_proxy"] == f"http://127.0.0.1:{emu.port}"
    assert env["NO_PROXY"] == "127.0.0.1,localhost"
    assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == env["CURL_CA_BUNDLE"] == emu.ca_bundle_path
    with open(emu.ca_bundle_path) as fh:
        assert "BEGIN CERTIFICATE" in fh.read()
    assert requests.utils.should_bypass_proxies(f"{emu.url}/x", no_proxy=None)
    assert not requests.utils.should_bypass_proxies(f"https://{HUB}/x", no_proxy=None)


# ------------------------------------------------------------------------------ target conditions (unit)


@pytest.mark.parametrize("condition, expected", [
    ("tags.env = 'prod'", True),
    ("tags.env <> 'prod'", False),
    ("tags.site.rack >= 3 AND tags.site.rack < 4", True),
    ("NOT (tags.env = 'dev' OR deviceId = 'x')", True),
    ("IS_DEFINED(tags.site.name) AND NOT IS_DEFINED(tags.missing)", True),
    ("tags.missing != 'x'", False),  # undefined never matches
    ("properties.reported.ready = true", True),
    ("deviceId = 'o''brien'", True),
    ("*", True),
    ("", False),
])
def test_target_condition_evaluator(condition: str, expected: bool) -> None:
    doc = {"deviceId": "o'brien", "tags": {"env": "prod", "site": {"name": "a", "rack": 3}},
           "properties": {"reported": {"ready": True}}}
    assert (iothub.compile_target_condition(condition)(doc) is True) is expected


# ------------------------------------------------------------------------------ the server itself


def _echo(request, state):  # a route for server-level tests
    from .framework import Response

    return Response(200, {"host": request.host, "path": request.path, "query": request.query,
                          "body": request.body.decode()})


def _echo_emulator() -> AzureEmulator:
    from .framework import Route

    emulator = AzureEmulator(load_services=False)
    emulator.register([Route(m, r".*", r"/echo.*", _echo) for m in ("GET", "POST", "PUT")])
    return emulator


def test_server_modes_latency_and_concurrency() -> None:
    import concurrent.futures

    with _echo_emulator() as emulator, emulator.environ():
        # through the proxy, for any host name: the leaf certificate is issued on demand
        assert requests.get("https://svc.example.test/echo?a=1").json()["host"] == "svc.example.test"
        # TLS straight to the port, certificate for 127.0.0.1
        direct = requests.get(f"https://127.0.0.1:{emulator.port}/echo%20x", verify=emulator.ca_bundle_path)
        assert direct.json() == {"host": "127.0.0.1", "path": "/echo x", "query": {}, "body": ""}
        # chunked request body
        chunked = requests.post(f"{emulator.url}/echo", data=iter([b"ab", b"cd"]))
        assert chunked.json()["body"] == "abcd"

        emulator.faults.add(latency=0.3, path="/echo/slow")
        started = time.monotonic()
        assert requests.get("https://svc.example.test/echo/slow").status_code == 200
        assert time.monotonic() - started >= 0.3

        emulator.reset_log()

        def worker(n: int) -> list[int]:
            with requests.Session() as session:
                return [session.put(f"https://h{n % 4}.example.test/echo/{n}/{i}", json={"i": i}).status_code
                        for i in range(25)]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = [s for result in pool.map(worker, range(16)) for s in result]
        assert statuses == [200] * 400
        assert len(emulator.calls("PUT")) == 400
        assert emulator.unmatched == [] and emulator.errors == []


def test_stop_does_not_hang_on_open_connections() -> None:
    import socket

    emulator = _echo_emulator().start()
    port = emulator.port
    with emulator.environ():
        session = requests.Session()
        assert session.get("https://svc.example.test/echo").status_code == 200  # pooled keep-alive tunnel
    idle = socket.create_connection(("127.0.0.1", port))  # connected, never sends a byte
    started = time.monotonic()
    emulator.close()
    assert time.monotonic() - started < 3
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    idle.close()
    session.close()


def test_handler_exceptions_become_500_and_are_recorded() -> None:
    from .framework import Route

    def boom(request, state):
        raise RuntimeError("bug in a handler")

    with AzureEmulator(load_services=False) as emulator:
        emulator.register([Route("GET", r".*", r"/boom", boom)])
        response = requests.get(f"{emulator.url}/boom")
        assert response.status_code == 500
        assert "bug in a handler" in emulator.errors[0]


def test_percent_faults_are_reproducible_with_a_seed() -> None:
    from .framework import Request
    from .server import Faults

    def pattern(seed: int) -> list[bool]:
        faults = Faults()
        faults.add(status=500, percent=30, seed=seed, method="GET")
        request = Request("GET", HUB, "/twins/x", {}, {}, b"")
        return [faults.evaluate(request).response is not None for _ in range(200)]

    first = pattern(seed=42)
    assert first == pattern(seed=42) != pattern(seed=7)
    assert 40 <= sum(first) <= 80  # ~30 %


def test_standalone_mode_prints_a_usable_environment() -> None:
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "tests.azure_emulator.server", "--port", "0"], cwd=root,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        lines = [proc.stdout.readline() for _ in range(8)]
        env = dict(line.removeprefix("export ").strip().split("=", 1) for line in lines if line.startswith("export "))
        assert set(env) >= {"HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"}
        proxies = {"https": env["HTTPS_PROXY"]}
        response = requests.get(f"https://{HUB}/configurations{API}", headers=SAS, proxies=proxies,
                                verify=env["REQUESTS_CA_BUNDLE"], timeout=10)
        assert (response.status_code, response.json()) == (200, [])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert not Path(env["REQUESTS_CA_BUNDLE"]).exists()  # temporary CA directory removed on exit
