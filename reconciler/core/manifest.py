"""Generate the IoT Edge deployment manifest (``modulesContent``) of a Deployment spec.

The output is what IoT Hub stores as a configuration's ``content.modulesContent``:
``$edgeAgent`` (runtime, registry credentials, system modules, modules), ``$edgeHub``
(routes, store-and-forward) and one entry per module with desired properties. Layered
deployments use dotted paths (``properties.desired.modules.<name>``) so they merge on top
of the device's base deployment instead of replacing it.

Registry passwords are never rendered: each is a placeholder that only the apply path
replaces, at apply time, with the password it fetches from the registry. Reading content
(modules, images, credentials, layered or not) is ``hub.manifest``'s job.
"""

from __future__ import annotations

import hashlib

from reconciler.hub import limits
from reconciler.hub.manifest import canonical_json, create_options_chunks, password_placeholder
from reconciler.model.specs import JSON, DeploymentSpec, ModuleSpec
from reconciler.model.state import LiveRegistry

EDGE_AGENT_IMAGE = "mcr.microsoft.com/azureiotedge-agent:1.5"
EDGE_HUB_IMAGE = "mcr.microsoft.com/azureiotedge-hub:1.5"
EDGE_HUB_CREATE_OPTIONS = {
    "HostConfig": {
        "PortBindings": {
            "5671/tcp": [{"HostPort": "5671"}],
            "8883/tcp": [{"HostPort": "8883"}],
            "443/tcp": [{"HostPort": "443"}],
        }
    }
}
SCHEMA_VERSION = "1.1"
DEFAULT_STORE_AND_FORWARD_SECONDS = 7200


def _settings(image: str, options: dict[str, JSON]) -> dict[str, str]:
    settings = {"image": image}
    for index, chunk in enumerate(create_options_chunks(options)):
        settings["createOptions" if index == 0 else f"createOptions{index:02d}"] = chunk
    return settings


def _env(env: dict[str, JSON]) -> dict[str, dict[str, JSON]]:
    return {name: {"value": value} for name, value in sorted(env.items())}


def _module(module: ModuleSpec, image: str) -> dict[str, JSON]:
    rendered: dict[str, JSON] = {
        "version": "1.0",
        "type": "docker",
        "status": module.status,
        "restartPolicy": module.restart_policy,
        "settings": _settings(image, module.create_options),
    }
    if module.env:
        rendered["env"] = _env(module.env)
    if module.startup_order is not None:
        rendered["startupOrder"] = module.startup_order
    if module.image_pull_policy is not None:
        rendered["imagePullPolicy"] = module.image_pull_policy
    return rendered


def _route(route: JSON) -> JSON:
    return route if isinstance(route, str) else {k: route[k] for k in sorted(route)}


def _registry_credentials(registry: LiveRegistry | None, name: str | None) -> dict[str, JSON]:
    if registry is None or name is None:
        return {}
    return {name: {"address": registry.address, "username": registry.username,
                   "password": password_placeholder(name)}}


def render(
    spec: DeploymentSpec, image_references: dict[str, str], registry: LiveRegistry | None
) -> dict[str, JSON]:
    """The ``modulesContent`` of a deployment. ``image_references`` maps Image spec names
    to full references (``<registry>/<name>:<label>``)."""
    modules = {m.name: _module(m, m.image if m.image_is_external else image_references[m.image])
               for m in spec.modules}
    routes = {name: _route(route) for name, route in sorted(spec.routes.items())}
    credentials = _registry_credentials(registry, spec.registry)
    module_twins = {m.name: m.desired_properties for m in spec.modules if m.desired_properties}
    if spec.layered:
        return _render_layered(modules, routes, credentials, module_twins)

    agent = spec.edge_agent
    hub = spec.edge_hub
    runtime_settings: dict[str, JSON] = {
        "minDockerVersion": agent.get("minDockerVersion", "v1.25"),
        "loggingOptions": agent.get("loggingOptions", ""),
    }
    if credentials:
        runtime_settings["registryCredentials"] = credentials
    edge_agent: dict[str, JSON] = {"type": "docker", "settings": _settings(agent.get("image", EDGE_AGENT_IMAGE),
                                                                           agent.get("createOptions", {}))}
    if agent.get("env"):
        edge_agent["env"] = _env(agent["env"])
    edge_hub: dict[str, JSON] = {
        "type": "docker", "status": "running", "restartPolicy": "always",
        "settings": _settings(hub.get("image", EDGE_HUB_IMAGE), hub.get("createOptions", EDGE_HUB_CREATE_OPTIONS)),
    }
    if hub.get("env"):
        edge_hub["env"] = _env(hub["env"])
    content: dict[str, JSON] = {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": SCHEMA_VERSION,
            "runtime": {"type": "docker", "settings": runtime_settings},
            "systemModules": {"edgeAgent": edge_agent, "edgeHub": edge_hub},
            "modules": modules,
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": SCHEMA_VERSION,
            "routes": routes,
            "storeAndForwardConfiguration": {
                "timeToLiveSecs": hub.get("storeAndForwardTimeToLiveSecs", DEFAULT_STORE_AND_FORWARD_SECONDS)},
        }},
    }
    for name, properties in module_twins.items():
        content[name] = {"properties.desired": properties}
    return content


def _render_layered(modules: dict[str, JSON], routes: dict[str, JSON], credentials: dict[str, JSON],
                    module_twins: dict[str, dict[str, JSON]]) -> dict[str, JSON]:
    # Every layered deployment must carry an $edgeAgent object, even an empty one.
    agent: dict[str, JSON] = {f"properties.desired.modules.{name}": module for name, module in modules.items()}
    for name, credential in credentials.items():
        agent[f"properties.desired.runtime.settings.registryCredentials.{name}"] = credential
    content: dict[str, JSON] = {"$edgeAgent": agent}
    if routes:
        content["$edgeHub"] = {f"properties.desired.routes.{name}": route for name, route in routes.items()}
    for name, properties in module_twins.items():
        content[name] = {"properties.desired": properties}
    return content


def content_hash(content: dict[str, JSON], credential_versions: dict[str, str]) -> str:
    """A short digest of the content as devices will receive it.

    Credential versions are included because the real password sits inside the content:
    a rotated password is new content, so IoT Hub needs a new deployment for it."""
    digest = hashlib.sha256(canonical_json({"content": content, "credentials": credential_versions}).encode())
    return digest.hexdigest()[: limits.CONTENT_HASH_LENGTH]


def deployment_id(name: str, digest: str) -> str:
    return f"{name}-{digest}"


DEPLOYMENT_ID_PLACEHOLDER = "{deploymentId}"


def metric_queries(metrics: dict[str, str], deployment_id: str) -> dict[str, str]:
    """Custom metric queries as the hub stores them: ``{deploymentId}`` becomes the deployment's id, so
    a query can count the devices of this content only (``configurations.[[{deploymentId}]].status``)."""
    return {name: query.replace(DEPLOYMENT_ID_PLACEHOLDER, deployment_id) for name, query in sorted(metrics.items())}
