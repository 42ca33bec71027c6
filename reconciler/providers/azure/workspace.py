"""The container registry attached to an Azure ML workspace, for both SDK adapters (``ml.py``, ``ml_v2.py``).

Each adapter reads the workspace's ``containerRegistry`` ARM id its own way; turning that id into the
registry's login server is the same rule for both, so it is written once here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reconciler.errors import PermanentProviderError
from reconciler.providers.azure.auth import registry_client
from reconciler.providers.azure.registry import REGISTRY_ID
from reconciler.providers.azure.retry import Retrier

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

RegistryLookup = Callable[[str, str, str], Any | None]


def login_server(registry_id: str, workspace_name: str, credential: TokenCredential, retrier: Retrier,
                 lookup: RegistryLookup | None) -> str:
    """The login server of the workspace's registry: the registry's own ``properties.loginServer`` (``GET`` of
    the ARM resource, unless ``lookup``, the provider's own reads, has it already). It is not always
    ``<name>.azurecr.io``: sovereign clouds (``.azurecr.cn``, ``.azurecr.us``) and registries with a domain
    name label (``<name>-<hash>.azurecr.io``) have other hosts."""
    match = REGISTRY_ID.search(registry_id)
    if match is None:
        raise PermanentProviderError(
            "the workspace has no container registry attached; attach one (az ml workspace update "
            "--container-registry <acr id>) so images can be built", resource=f"workspace {workspace_name}")
    sub, group, name = match.group("sub"), match.group("rg"), match.group("name")
    registry = lookup(sub, group, name) if lookup else None
    if registry is None:
        client = registry_client(credential, sub, retrier.stats)
        try:
            registry = retrier.call(lambda: client.registries.get(group, name), what=f"registry {name}", write=False)
        finally:
            client.close()
    return str(registry.login_server)
