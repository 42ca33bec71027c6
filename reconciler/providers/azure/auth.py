"""Credentials and SDK clients, with no secret in any file.

* ARM (container registries) and Azure ML: ``azure.identity.DefaultAzureCredential``: environment variables
  (``AZURE_CLIENT_ID`` / ``AZURE_TENANT_ID`` / ``AZURE_CLIENT_SECRET`` or a federated token in CI), a managed
  identity, or ``az login``.
* IoT Hub: a service connection string read from the environment variable that
  ``spec.azure.iotHub.connectionString.fromEnv`` names, or, without that setting, the same Azure credential
  (``from_token_credential``; the identity needs an IoT Hub data-plane role).

SDKs are imported inside the functions: ``reconciler validate`` and plans on the local backend import this
package's callers never. The clients are built with the SDKs' own retries off, so that ``retry.Retrier``
alone retries (and the emulator's request log counts real calls), and with a hook that counts every HTTP
response in ``CallStats.http``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.errors import PermanentProviderError
from reconciler.providers.azure import errors
from reconciler.providers.azure.retry import CallStats, RetryPolicy

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

IOTHUB_FIELDS = ("HostName", "SharedAccessKeyName", "SharedAccessKey")
# Configurations asked for at once: 100 edge deployments + 100 ADM configurations per hub. The hub answers at
# most its maximum deployment count (100), so asking for more is harmless; see ``iothub.Listing``.
IOTHUB_TOP = 200


AZURE_CORE_BACKOFF = 0.8  # azure-core's default retry_backoff_factor, in seconds
# The one AAD scope for ARM, Azure ML and the ACR token exchange: azureml and azure-containerregistry ask for
# this audience already, and ARM accepts it as well as https://management.azure.com/ (the Azure CLI uses it), so
# a run needs one ARM token instead of two.
MANAGEMENT_SCOPE = "https://management.core.windows.net/.default"


def azure_credential() -> TokenCredential:
    """The Azure credential chain. Tokens are fetched (and cached) on first use, not here.

    Token requests keep azure-identity's own retries (they are reads, and a token failure is not a
    write whose answer matters); their backoff is scaled like every other wait (``RECONCILER_RETRY_SCALE``)."""
    from azure.identity import DefaultAzureCredential

    scale = RetryPolicy.from_env().scale
    credential: TokenCredential = DefaultAzureCredential(exclude_interactive_browser_credential=True,
                                                         retry_backoff_factor=AZURE_CORE_BACKOFF * scale)
    return credential


@dataclass(frozen=True)
class HubAccess:
    """How to reach the IoT Hub: its host name and either a connection string or the Azure credential."""

    host: str
    connection_string: str | None  # None: use the Azure credential
    source: str  # for messages: "$IOTHUB_CONNECTION_STRING" or "the Azure credential"

    def __repr__(self) -> str:  # never print the connection string
        return f"HubAccess(host={self.host!r}, source={self.source!r})"


def _parse_connection_string(text: str) -> dict[str, str]:
    fields = {}
    for part in text.strip().split(";"):
        key, separator, value = part.partition("=")
        if separator:
            fields[key.strip()] = value.strip()
    return fields


def hub_access(iot_hub: dict[str, Any], environ: dict[str, str] | None = None) -> HubAccess:
    """Read the hub's access from the environment. Errors name the variable, never its value."""
    environ = dict(os.environ) if environ is None else environ
    host = str(iot_hub["hostName"])
    reference = iot_hub.get("connectionString")
    if not reference:
        return HubAccess(host, None, "the Azure credential")
    variable = str(reference["fromEnv"])
    value = environ.get(variable, "").strip()
    if not value:
        raise PermanentProviderError(
            f"the environment variable {variable} is not set (or empty); environment.yaml reads the IoT Hub "
            f"connection string from it: export {variable}='HostName=...;SharedAccessKeyName=...;"
            "SharedAccessKey=...' (a shared access policy with registry write and service connect), or remove "
            "iotHub.connectionString to sign in with the Azure credential")
    errors.register_secret(value)
    fields = _parse_connection_string(value)
    errors.register_secret(fields.get("SharedAccessKey"))
    missing = [name for name in IOTHUB_FIELDS if not fields.get(name)]
    if missing:
        raise PermanentProviderError(
            f"the environment variable {variable} does not hold an IoT Hub service connection string: "
            f"{', '.join(missing)} missing (expected HostName=...;SharedAccessKeyName=...;SharedAccessKey=...)")
    if fields["HostName"].lower() != host.lower():
        raise PermanentProviderError(
            f"the connection string in {variable} is for the hub {fields['HostName']}, but environment.yaml "
            f"names {host}; export the connection string of {host}")
    return HubAccess(host, value, f"${variable}")


def _quiet_msrest(protocol: Any, stats: CallStats) -> None:
    """Turn msrest's own retries off and count responses.

    ``retries = 0`` stops urllib3's retries (including the silent Retry-After sleeps on 429 for
    GET/PUT/DELETE); ``raise_on_status = False`` makes urllib3 hand back the last response instead of a
    ``MaxRetryError``, so the SDK raises its ``HttpOperationError`` with the status and headers intact."""
    config = protocol.config
    config.enable_http_logger = False  # its DEBUG log would print request bodies: content with passwords
    config.retry_policy.retries = 0
    config.retry_policy.policy.raise_on_status = False
    config.hooks.append(lambda *args, **kwargs: stats.count_http("iothub"))


def iothub_managers(access: HubAccess, credential: TokenCredential | None, stats: CallStats) -> tuple[Any, Any]:
    """``(IoTHubConfigurationManager, IoTHubRegistryManager)`` for the hub."""
    from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager

    if access.connection_string is not None:
        configurations = IoTHubConfigurationManager.from_connection_string(access.connection_string)
        registry = IoTHubRegistryManager.from_connection_string(access.connection_string)
    else:
        assert credential is not None
        configurations = IoTHubConfigurationManager.from_token_credential(access.host, credential)
        registry = IoTHubRegistryManager.from_token_credential(access.host, credential)
    for manager in (configurations, registry):
        _quiet_msrest(manager.protocol, stats)
    return configurations, registry


def registry_client(credential: TokenCredential, subscription_id: str, stats: CallStats,
                    api_version: str | None = None) -> Any:
    """``ContainerRegistryManagementClient`` without azure-core retries, counting responses; ``api_version``
    pins every operation group to one version (default: the SDK's profile)."""
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    return ContainerRegistryManagementClient(
        credential, subscription_id, api_version=api_version, retry_total=0, credential_scopes=[MANAGEMENT_SCOPE],
        raw_response_hook=lambda response: stats.count_http("arm"),
    )
