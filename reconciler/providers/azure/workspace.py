"""What both Azure ML SDK adapters (``ml.py``, ``ml_v2.py``) share: the container registry attached to the
workspace, and the fingerprint of a model version another tool registered.

Each adapter reads the workspace's ``containerRegistry`` ARM id its own way; turning that id into the
registry's login server is the same rule for both, so it is written once here. Likewise a version's identity
fingerprint: both SDKs must give the same one, or switching SDKs would rebuild every image packaging it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from reconciler.errors import PermanentProviderError
from reconciler.providers.azure.auth import registry_client
from reconciler.providers.azure.registry import REGISTRY_ID
from reconciler.providers.azure.retry import Retrier

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

RegistryLookup = Callable[[str, str, str], Any | None]


class WorkspaceAddress:
    """Which workspace, with which credential and retrier: what both SDK connections (``ml.WorkspaceConnection``,
    ``ml_v2.MLClientConnection``) hold, and the registry's login server they derive alike. Each reads the
    workspace's ``registry_id`` its own way."""

    def __init__(self, subscription_id: str, resource_group: str, workspace_name: str,
                 credential: TokenCredential, retrier: Retrier | None = None,
                 registry_lookup: RegistryLookup | None = None) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace_name = workspace_name
        self.credential = credential
        self.retrier = retrier or Retrier()
        # (subscription, resource group, name) -> the ARM registry, from the provider's own reads (None when it
        # has not read that one): the workspace's registry is usually a declared registry too.
        self._registry_lookup = registry_lookup

    @property
    def registry_id(self) -> str:
        """The ARM id of the workspace's container registry ('' when none is attached)."""
        raise NotImplementedError

    @cached_property
    def registry(self) -> str:
        """The login server of the workspace's container registry, where images are pushed
        (``login_server``)."""
        return login_server(self.registry_id, self.workspace_name, self.credential, self.retrier,
                            self._registry_lookup)


def identity_fingerprint(name: str, version: int) -> str:
    """The fingerprint of a version registered by another tool (``spec.source.registered``), which records no
    digest of its files: a digest of its identity in the workspace, ``name:version``. Azure ML never changes a
    version's files, so the identity stands for the content; unlike a file digest, the same bytes registered
    twice give two fingerprints. Only what both SDKs report alike goes in (v1's asset URL has no v2 twin)."""
    return hashlib.sha256(json.dumps({"model": f"{name}:{version}"}, sort_keys=True).encode()).hexdigest()


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
