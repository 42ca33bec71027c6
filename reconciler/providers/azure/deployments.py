"""The apply path's deployment store and registry credentials on Azure: IoT Hub configurations, and ACR
credentials whose token passwords are kept in the hub's password store (see ``registry``)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from reconciler.hub.manifest import registry_credentials
from reconciler.model.specs import JSON
from reconciler.model.state import LiveDeployment
from reconciler.providers.azure import registry as acr
from reconciler.providers.azure.iothub import IoTHub, is_edge_deployment, modules_content, owner_of
from reconciler.providers.base import PullCredential

log = logging.getLogger("reconciler.providers.azure")


def owned_configurations(configs: list[Any], environment: str) -> list[Any]:
    return [cfg for cfg in configs if owner_of(cfg) == environment and is_edge_deployment(cfg)]


def embedded_tokens(configs: list[Any], environment: str) -> dict[str, dict[str, datetime | None]]:
    """Registry -> username -> creation time of the oldest owned deployment embedding it."""
    found: dict[str, dict[str, datetime | None]] = {}
    for cfg in owned_configurations(configs, environment):
        created = cfg.created_time_utc if isinstance(cfg.created_time_utc, datetime) else None
        for registry, entry in registry_credentials(modules_content(cfg) or {}).items():
            users = found.setdefault(registry, {})
            username = str(entry.get("username"))
            previous = users.get(username)
            if username not in users or (created is not None and (previous is None or created < previous)):
                users[username] = created
    return found


class HubDeployments:
    """``DeploymentStore`` on IoT Hub. A delete is conditional on the etag of the configuration as ``get``
    last read it, so a concurrent change fails (412) instead of being deleted."""

    def __init__(self, hub: IoTHub, environment: str) -> None:
        self._hub, self._environment = hub, environment
        self._read: dict[str, Any] = {}  # id -> the configuration as last read

    def get(self, deployment_id: str) -> LiveDeployment | None:
        cfg = self._hub.get_configuration(deployment_id)
        if cfg is None or not is_edge_deployment(cfg):
            return None
        self._read[deployment_id] = cfg
        return self._hub.live_deployment(cfg)

    def owned(self) -> list[LiveDeployment]:
        return [self._hub.live_deployment(cfg)
                for cfg in owned_configurations(self._hub.list_configurations(), self._environment)]

    def create(self, deployment_id: str, content: dict[str, JSON], target_condition: str, priority: int,
               labels: dict[str, str], metrics: dict[str, str], layered: bool) -> None:
        self._hub.create(deployment_id, content, labels, target_condition, priority, metrics)

    def update(self, deployment_id: str, target_condition: str, priority: int, labels: dict[str, str],
               metrics: dict[str, str]) -> None:
        self._hub.update(deployment_id, labels, target_condition, priority, metrics)

    def delete(self, deployment_id: str) -> None:
        cfg = self._read.pop(deployment_id, None) or self._hub.get_configuration(deployment_id)
        if cfg is not None:
            self._hub.delete(cfg)


class AcrCredentials:
    """``CredentialStore`` on ACR: a pull token (or the admin user) per registry; a token's password comes
    from the hub's password store, and is generated only for a token that has none yet."""

    def __init__(self, registries: acr.Registries, hub: IoTHub, environment: str) -> None:
        self._registries, self._hub, self._environment = registries, hub, environment

    def credential(self, registry: str, username: str, repositories: set[str]) -> PullCredential:
        password = self._registries.password(registry, username, repositories)
        return PullCredential(password, self._registries.credential_version(registry, username, password))

    def release_unused(self, registry: str, in_use: set[str]) -> None:
        """``in_use`` comes from the hub's listing of deployments: when that may have left some out, a token
        missing from it may still be embedded, and nothing is deleted."""
        listing = self._hub.last_listing
        if listing is None or listing.may_be_truncated:
            log.warning("registry %s: the tokens no deployment embeds any more are kept: the hub's listing of "
                        "deployments may be incomplete", registry)
            return
        self._registries.release_unused(registry, in_use)
