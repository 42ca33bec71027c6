"""Real-world style IoT Edge deployments, as people make them with `az iot edge deployment create`, the
portal, or the IoT Edge tools (VS Code, iotedgedev): what `reconciler import` must take over exactly.

Shapes from the IoT Edge templates: ``$edgeAgent`` with ``runtime`` and ``systemModules``,
``registryCredentials``, createOptions as minified JSON strings in the key order the tools keep
(JSON.stringify), long ones split into ``createOptions01..`` 512-character chunks, ``$edgeHub`` routes
(strings and objects with a priority) and store-and-forward, module twins, layered deployments with
``properties.desired.<path>`` keys, custom metrics naming the deployment's own id.

``REGISTRY_NAME`` / ``REGISTRY_ADDRESS`` / ``REGISTRY_USER`` stand for the environment's registry (its
name in environment.yaml, as docs/migrating.md advises, and its pull credentials, as a person would paste
them); ``PASSWORD`` must never reach a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

REGISTRY_NAME = "$REGISTRY_NAME"
REGISTRY_ADDRESS = "$REGISTRY_ADDRESS"
REGISTRY_USER = "$REGISTRY_USER"
PASSWORD = "brownfield-secret-0xC0FFEE"  # noqa: S105 - a test value that must never be written to a file
CHUNK = 512


def options(value: dict[str, Any]) -> dict[str, str]:
    """createOptions as the IoT Edge tools write them: JSON.stringify (key order kept), 512-character chunks."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    chunks = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or ["{}"]
    return {("createOptions" if i == 0 else f"createOptions{i:02d}"): chunk for i, chunk in enumerate(chunks)}


def module(image: str, create: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                                  "settings": {"image": image, **options(create or {})}}
    definition.update(extra)
    return definition


HUB_PORTS = {"HostConfig": {"PortBindings": {"5671/tcp": [{"HostPort": "5671"}], "8883/tcp": [{"HostPort": "8883"}],
                                             "443/tcp": [{"HostPort": "443"}]}}}


def base(modules: dict[str, Any], routes: dict[str, Any], *, agent_schema: str = "1.1", hub_schema: str = "1.2",
         credentials: bool = True, agent_image: str = "mcr.microsoft.com/azureiotedge-agent:1.5",
         hub_image: str = "mcr.microsoft.com/azureiotedge-hub:1.5", agent_env: dict[str, Any] | None = None,
         hub_env: dict[str, Any] | None = None, ttl: int = 7200, twins: dict[str, Any] | None = None,
         hub_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A standard deployment, as the VS Code IoT Edge template (deployment.template.json) generates it."""
    settings: dict[str, Any] = {"minDockerVersion": "v1.25", "loggingOptions": ""}
    if credentials:
        settings["registryCredentials"] = {REGISTRY_NAME: {"username": REGISTRY_USER, "password": PASSWORD,
                                                       "address": REGISTRY_ADDRESS}}
    edge_agent: dict[str, Any] = {"type": "docker", "settings": {"image": agent_image, "createOptions": "{}"}}
    if agent_env:
        edge_agent["env"] = {k: {"value": v} for k, v in agent_env.items()}
    edge_hub: dict[str, Any] = {"type": "docker", "status": "running", "restartPolicy": "always",
                                "settings": {"image": hub_image, **options(hub_options or HUB_PORTS)}}
    if hub_env:
        edge_hub["env"] = {k: {"value": v} for k, v in hub_env.items()}
    content: dict[str, Any] = {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": agent_schema,
            "runtime": {"type": "docker", "settings": settings},
            "systemModules": {"edgeAgent": edge_agent, "edgeHub": edge_hub},
            "modules": modules}},
        "$edgeHub": {"properties.desired": {"schemaVersion": hub_schema, "routes": routes,
                                            "storeAndForwardConfiguration": {"timeToLiveSecs": ttl}}},
    }
    for name, properties in (twins or {}).items():
        content[name] = {"properties.desired": properties}
    return content


def layered(modules: dict[str, Any], routes: dict[str, Any], *, credentials: bool = False,
            twins: dict[str, Any] | None = None) -> dict[str, Any]:
    """A layered deployment: dotted ``properties.desired.<path>`` keys merged on top of the base."""
    agent: dict[str, Any] = {f"properties.desired.modules.{name}": d for name, d in modules.items()}
    if credentials:
        agent[f"properties.desired.runtime.settings.registryCredentials.{REGISTRY_NAME}"] = {
            "username": REGISTRY_USER, "password": PASSWORD, "address": REGISTRY_ADDRESS}
    content: dict[str, Any] = {"$edgeAgent": agent}
    if routes:
        content["$edgeHub"] = {f"properties.desired.routes.{name}": route for name, route in routes.items()}
    for name, properties in (twins or {}).items():
        content[name] = {"properties.desired": properties}
    return content


@dataclass(frozen=True)
class Brownfield:
    """One deployment as it sits in the hub before the reconciler sees it."""

    id: str
    content: dict[str, Any]
    condition: str
    priority: int
    layered: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    exact: bool = True  # the specs reproduce it: adopted in place (else: adopted by a replace)

    @property
    def name(self) -> str:
        return self.id

    def with_registry(self, name: str, address: str, username: str) -> dict[str, Any]:
        text = json.dumps(self.content).replace(REGISTRY_ADDRESS, address).replace(REGISTRY_USER, username)
        text = text.replace(REGISTRY_NAME, name)
        content: dict[str, Any] = json.loads(text)
        return content


SENSOR = "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5"
ACR = REGISTRY_ADDRESS

MANIFESTS = [
    # 1. The VS Code "SimulatedTemperatureSensor" solution template, unchanged.
    Brownfield("sim-temp-sensor", base(
        {"SimulatedTemperatureSensor": module(SENSOR)},
        {"SimulatedTemperatureSensorToIoTHub": "FROM /messages/modules/SimulatedTemperatureSensor/* INTO $upstream"}),
        "tags.environment='dev'", 10, labels={"app": "sensors"}),
    # 2. The IoT Edge tutorial's C# filter module behind the sensor: BrokeredEndpoint routes, a module twin.
    Brownfield("filter-pipeline", base(
        {"SimulatedTemperatureSensor": module(SENSOR),
         "filtermodule": module(f"{ACR}/filtermodule:0.0.1-amd64")},
        {"sensorToFilter": "FROM /messages/modules/SimulatedTemperatureSensor/outputs/temperatureOutput INTO "
                           "BrokeredEndpoint(\"/modules/filtermodule/inputs/input1\")",
         "filterToIoTHub": "FROM /messages/modules/filtermodule/outputs/output1 INTO $upstream"},
        twins={"filtermodule": {"TemperatureThreshold": 25}}),
        "tags.site='a'", 20),
    # 3. A GPU scorer with long createOptions, split into createOptions01 and createOptions02.
    Brownfield("gpu-scorer", base(
        {"scorer": module(f"{ACR}/yolo-scorer:2.3.1", {
            "Env": [f"MODEL_VARIANT_{i}=yolov8-{i}-int8-calibrated-for-edge-inference" for i in range(12)],
            "HostConfig": {"Runtime": "nvidia", "ShmSize": 1073741824,
                           "Binds": ["/data/models:/models:ro", "/data/cache:/cache", "/dev/shm:/dev/shm"],
                           "Devices": [{"PathOnHost": f"/dev/video{i}", "PathInContainer": f"/dev/video{i}",
                                        "CgroupPermissions": "rwm"} for i in range(4)],
                           "PortBindings": {"5001/tcp": [{"HostPort": "5001"}]}},
            "Labels": {"com.contoso.team": "vision", "com.contoso.cost-center": "4711"}},
            env={"WORKERS": {"value": "4"}, "LOG_LEVEL": {"value": "info"}})},
        {"scorerToIoTHub": "FROM /messages/modules/scorer/outputs/* INTO $upstream"}),
        "tags.environment='dev' AND tags.gpu='true'", 30, labels={"team": "vision", "tier": "gpu"}),
    # 4. A layered deployment adding a metrics collector, with a module twin and custom metrics.
    Brownfield("metrics-layer", layered(
        {"metricscollector": module("mcr.microsoft.com/azureiotedge-metrics-collector:1.1")},
        {"metricsToUpstream": "FROM /messages/modules/metricscollector/* INTO $upstream"},
        twins={"metricscollector": {"ResourceId": "/subscriptions/0000/resourceGroups/rg/providers/"
                                                  "Microsoft.Devices/IotHubs/hub",
                                    "UploadTarget": "IoTMessage", "ScrapeFrequencyInSecs": 300}}),
        "tags.environment='dev'", 50, layered=True, labels={"layer": "observability"},
        metrics={"appliedCount": "SELECT deviceId FROM devices.modules WHERE "
                                 "properties.reported.lastDesiredStatus.code = 200"}),
    # 5. A layered deployment of a private image, with its registry credentials as a dotted path.
    Brownfield("private-layer", layered(
        {"anomaly": module(f"{ACR}/anomaly-detector:1.4", {"HostConfig": {"Memory": 536870912}})},
        {"anomalyToIoTHub": {"route": "FROM /messages/modules/anomaly/* INTO $upstream", "priority": 1,
                             "timeToLiveSecs": 86400}},
        credentials=True),
        "tags.site='b'", 60, layered=True),
    # 6. Stream Analytics on the edge style: restart on failure, startup order, route priorities.
    Brownfield("asa-edge", base(
        {"SimulatedTemperatureSensor": module(SENSOR, startupOrder=1),
         "asaJob": module(f"{ACR}/asa-temperature-alert:1.0.0", restartPolicy="on-failure", startupOrder=2,
                          imagePullPolicy="on-create")},
        {"telemetryToAsa": {"route": "FROM /messages/modules/SimulatedTemperatureSensor/* INTO "
                                     "BrokeredEndpoint(\"/modules/asaJob/inputs/temperature\")", "priority": 0,
                            "timeToLiveSecs": 3600},
         "alertsToCloud": {"route": "FROM /messages/modules/asaJob/* INTO $upstream", "priority": 2}}),
        "tags.environment='dev' AND (tags.site='a' OR tags.site='b')", 15),
    # 7. An older OPC UA gateway: runtime 1.4, schema 1.0, agent and hub environment variables.
    Brownfield("opc-gateway", base(
        {"OPCPublisher": module("mcr.microsoft.com/iotedge/opc-publisher:2.8", {
            "Hostname": "publisher", "Cmd": ["--pf=/appdata/publishednodes.json", "--aa"],
            "HostConfig": {"Binds": ["/iiotedge:/appdata"]}})},
        {"opcToIoTHub": "FROM /messages/modules/OPCPublisher/* INTO $upstream"},
        agent_schema="1.0", hub_schema="1.0", credentials=False,
        agent_image="mcr.microsoft.com/azureiotedge-agent:1.4", hub_image="mcr.microsoft.com/azureiotedge-hub:1.4",
        agent_env={"UpstreamProtocol": "AmqpWs", "SendRuntimeQualityTelemetry": False},
        hub_env={"OptimizeForPerformance": "false", "UpstreamProtocol": "AmqpWs"}),
        "tags.opc='true'", 5),
    # 8. A maintenance deployment: a stopped module that never restarts.
    Brownfield("maintenance", base(
        {"dbmigrate": module(f"{ACR}/db-migrate:2024.11", status="stopped", restartPolicy="never"),
         "SimulatedTemperatureSensor": module(SENSOR)},
        {}, credentials=True), "deviceId='cam-a1' OR deviceId='cam-a2'", 90, labels={"purpose": "maintenance"}),
    # 9. Blob storage on the edge: binds, ports, a 1-day store-and-forward and a long twin.
    Brownfield("blob-storage", base(
        {"azureblobstorageoniotedge": module("mcr.microsoft.com/azure-blob-storage:latest", {
            "Env": ["LOCAL_STORAGE_ACCOUNT_NAME=edgestore", "LOCAL_STORAGE_ACCOUNT_KEY=placeholder-not-a-key"],
            "HostConfig": {"Binds": ["/srv/containerdata:/blobroot"],
                           "PortBindings": {"11002/tcp": [{"HostPort": "11002"}]}}})},
        {"blobToIoTHub": "FROM /messages/modules/azureblobstorageoniotedge/* INTO $upstream"},
        ttl=86400, credentials=False,
        twins={"azureblobstorageoniotedge": {
            "deviceAutoDeleteProperties": {"deleteOn": True, "deleteAfterMinutes": 1440, "retainWhileUploading": True},
            "deviceToCloudUploadProperties": {"uploadOn": True, "uploadOrder": "OldestFirst",
                                              "cloudStorageConnectionString": "",
                                              "storageContainersForUpload": {"cont1": {"target": "cloud1"}},
                                              "deleteAfterUpload": False}}}),
        "tags.storage='true'", 25),
    # 10. A deployment with custom metrics that name its own id (as `az iot edge deployment create` users
    #     write them), and edgeHub ports in sorted order.
    Brownfield("fleet-2024", base(
        {"scorer": module(f"{ACR}/iris-scorer:1.0", {"HostConfig": {"PortBindings": {"5001/tcp": [
            {"HostPort": "5001"}]}}})},
        {"all": "FROM /messages/* INTO $upstream"}, hub_schema="1.1",
        hub_options={"HostConfig": {"PortBindings": {"443/tcp": [{"HostPort": "443"}],
                                                     "5671/tcp": [{"HostPort": "5671"}],
                                                     "8883/tcp": [{"HostPort": "8883"}]}}}),
        "tags.environment='dev'", 40, labels={"release": "2024.10"},
        metrics={"successful": "SELECT deviceId FROM devices WHERE configurations.[[fleet-2024]].status='Applied'",
                 "failed": "SELECT deviceId FROM devices.modules WHERE moduleId='$edgeAgent' AND "
                           "configurations.[[fleet-2024]].status='Applied' AND "
                           "properties.desired.$version = properties.reported.lastDesiredVersion AND "
                           "properties.reported.lastDesiredStatus.code != 200"}),
    # 11. Hand-written JSON the specs cannot reproduce byte for byte: pretty-printed createOptions and a
    #     module version other than 1.0. Imported as close as possible; adoption is a visible replace.
    Brownfield("handwritten", base(
        {"legacy": {"version": "2.0", "type": "docker", "status": "running", "restartPolicy": "always",
                    "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.4",
                                 "createOptions": "{\"HostConfig\": {\"Privileged\": true}}"}}},
        {"legacyToIoTHub": "FROM /messages/modules/legacy/* INTO $upstream"}, credentials=False),
        "tags.legacy='true'", 3, exact=False),
    # 12. The layered example of the IoT Edge docs: an empty createOptions string and module twin values set
    #     as dotted paths, which specs do not write. Imported as close as possible; adoption is a replace.
    Brownfield("docs-layer", {
        "$edgeAgent": {"properties.desired.modules.SimulatedTemperatureSensor": {
            "settings": {"image": SENSOR, "createOptions": ""},
            "type": "docker", "status": "running", "restartPolicy": "always", "version": "1.0"}},
        "$edgeHub": {"properties.desired.routes.upstream": "FROM /messages/* INTO $upstream"},
        "SimulatedTemperatureSensor": {"properties.desired.SendData": True, "properties.desired.SendInterval": 5}},
        "tags.sensor='yes'", 70, layered=True, exact=False),
]
