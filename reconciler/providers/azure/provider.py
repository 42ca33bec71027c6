"""``AzureProvider``: the Provider protocol on Azure ML + Azure Container Registry + Azure IoT Hub.

Composition only. The apply path (``providers.apply``) drives four adapters: the model registry and the
image builder (``ml_api`` protocols, on azureml-core in ``ml.py``), the hub's deployments and the ACR pull
credentials (``deployments.py``). The snapshot, the lock (``lock.HubLock``) and credential rotation are
here. Every SDK call goes through one ``retry.Retrier`` (whose ``stats`` count the calls), and nothing is
imported or contacted before it is needed. REST calls per operation are listed in docs/azure.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import PermanentProviderError
from reconciler.model.specs import DesiredState, EnvironmentSpec
from reconciler.model.state import Snapshot
from reconciler.providers.azure import registry as acr
from reconciler.providers.azure.auth import MANAGEMENT_SCOPE, azure_credential, hub_access
from reconciler.providers.azure.deployments import AcrCredentials, HubDeployments, embedded_tokens
from reconciler.providers.azure.iothub import IoTHub, is_edge_deployment
from reconciler.providers.azure.lock import HubLock, hold
from reconciler.providers.azure.password_store import HubPasswordStore
from reconciler.providers.azure.queries import DEFAULT_BUDGET
from reconciler.providers.azure.retry import CallStats, Retrier, RetryPolicy
from reconciler.providers.base import Adapters, BuiltImage, Check, HeldLock, LockInfo

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from reconciler.providers.azure.ml import WorkspaceConnection
    from reconciler.providers.azure.ml_api import ImageBuilder, ModelRegistry

class AzureProvider:
    """One environment on Azure (see the module docstring)."""

    def __init__(self, environment: EnvironmentSpec, *, retry_policy: RetryPolicy | None = None,
                 lock_ttl: timedelta | None = None, model_registry: ModelRegistry | None = None,
                 image_builder: ImageBuilder | None = None) -> None:
        self.environment = environment
        self.name = environment.name
        settings = environment.settings
        try:
            self.subscription_id = str(settings["subscriptionId"])
            self.resource_group = str(settings["resourceGroup"])
            self.workspace_name = str(settings["workspace"])
            self._iot_hub: dict[str, Any] = dict(settings["iotHub"])
            str(self._iot_hub["hostName"])
        except (KeyError, TypeError) as exc:
            raise PermanentProviderError(f"environment.yaml lacks the Azure setting {exc}; run `reconciler "
                                         "validate`", resource=f"environment {self.name}") from exc
        self.stats = CallStats()
        self.retrier = Retrier(retry_policy, self.stats)
        self._lock_ttl = lock_ttl
        if model_registry is not None:
            self.__dict__["models"] = model_registry
        if image_builder is not None:
            self.__dict__["images"] = image_builder

    # --- adapters, built on first use -----------------------------------------------

    @cached_property
    def credential(self) -> TokenCredential:
        return azure_credential()

    @cached_property
    def hub(self) -> IoTHub:
        budget = int(self._iot_hub.get("queryBudget", DEFAULT_BUDGET))
        return IoTHub(hub_access(self._iot_hub), lambda: self.credential, self.retrier, self.name, budget)

    @cached_property
    def connection(self) -> WorkspaceConnection:
        from reconciler.providers.azure.ml import WorkspaceConnection

        return WorkspaceConnection(self.subscription_id, self.resource_group, self.workspace_name, self.credential,
                                   retrier=self.retrier, registry_lookup=self.registries.read_already)

    @cached_property
    def models(self) -> ModelRegistry:
        from reconciler.providers.azure.ml import AzureMLModelRegistry

        return AzureMLModelRegistry(self.connection, self.name)

    @cached_property
    def images(self) -> ImageBuilder:
        from reconciler.providers.azure.ml import AzureMLImageBuilder

        return AzureMLImageBuilder(self.connection, self.name)

    @cached_property
    def registries(self) -> acr.Registries:
        return acr.Registries(self.name, self.subscription_id, self.resource_group, self.environment.registries,
                              lambda: self.credential, self.retrier, self._workspace_registry,
                              HubPasswordStore(self.hub, self.name))

    def _workspace_registry(self) -> tuple[str, str]:
        """(resource group, name) of the ACR attached to the workspace: where ``acr`` is omitted. The
        workspace is read once per provider (``WorkspaceConnection.registry_id``), for images too."""
        match = acr.REGISTRY_ID.search(self.connection.registry_id)
        if match is None:
            raise PermanentProviderError("the workspace has no container registry attached; name one with `acr:` "
                                         "in environment.yaml", resource=f"workspace {self.workspace_name}")
        return match.group("rg"), match.group("name")

    # --- the protocol ---------------------------------------------------------------

    def read_snapshot(self, desired: DesiredState, *, health: bool = False,
                      deployments_only: bool = False) -> Snapshot:
        """The models are listed in a thread of their own (opening the workspace takes 2-3 round trips of its
        own), while the hub, the registries and the images are read here: one plan waits for the longer of
        the two instead of their sum. The AAD token both need is fetched first, once."""
        with suppress(Exception):  # only warms the credential's cache: a failure shows in the calls that need it
            self.credential.get_token(MANAGEMENT_SCOPE)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="azure-models") as pool:
            listed_models = None if deployments_only else pool.submit(self.models.list_owned)
            configs = [cfg for cfg in self.hub.list_configurations() if is_edge_deployment(cfg)]
            rollout = self.hub.health(configs) if health else self.hub.candidate_health(configs)
            deployments = sorted((self.hub.live_deployment(cfg, rollout.get(cfg.id)) for cfg in configs),
                                 key=lambda d: d.id)
            registries = self.registries.read(embedded_tokens(configs, self.name))
            images = [] if deployments_only else sorted(self.images.list_owned(sorted(desired.images)),
                                                        key=lambda i: (i.name, i.label))
            models = [] if listed_models is None else sorted(listed_models.result(),
                                                             key=lambda m: (m.name, m.version))
        return Snapshot(environment=self.name, image_registry=self.images.registry, models=tuple(models),
                        images=tuple(images), deployments=tuple(deployments), registries=registries)

    def count_devices(self, target_condition: str) -> int:
        return self.hub.count_devices(target_condition)

    def count_many(self, target_conditions: Sequence[str]) -> dict[str, int | None]:
        return self.hub.count_many(target_conditions)

    def query_usage(self) -> tuple[int, int]:
        """IoT Hub query pages this run spent, and its budget."""
        return self.hub.counter.spent, self.hub.query_budget

    def device_ids(self, target_condition: str) -> list[str]:
        return self.hub.device_ids(target_condition)

    def adapters(self) -> Adapters:
        return Adapters(self.models, self.images, HubDeployments(self.hub, self.name),
                        AcrCredentials(self.registries, self.hub, self.name))

    def lock(self, holder: str) -> AbstractContextManager[HeldLock]:
        return hold(HubLock(self.hub, self.name, holder, self._lock_ttl))

    def force_unlock(self, lock_id: str) -> LockInfo:
        return HubLock(self.hub, self.name, "force-unlock", self._lock_ttl).force_unlock(lock_id)

    def close(self) -> None:
        """Close what was opened; safe to call twice."""
        images = self.__dict__.pop("images", None)
        if images is not None:
            images.close()
        registries = self.__dict__.pop("registries", None)
        client = registries.__dict__.pop("client", None) if registries is not None else None
        if client is not None:
            client.close()
        hub = self.__dict__.pop("hub", None)
        managers = hub.__dict__.pop("_managers", None) if hub is not None else None
        for manager in managers or ():
            manager.protocol.close()
        credential = self.__dict__.pop("credential", None)
        if credential is not None and hasattr(credential, "close"):
            credential.close()

    # --- beyond the protocol --------------------------------------------------------

    def built_image_files(self, name: str, label: str, destination: Path) -> BuiltImage | None:
        """``BuiltImageFiles``: what the image builder recorded of ``name:label``'s inputs when it built it."""
        return self.images.built_files(name, label, destination)

    def diagnose(self, *, write_probe: bool = False) -> list[Check]:
        """``reconciler doctor``: see ``doctor``."""
        from reconciler.providers.azure.doctor import diagnose

        return diagnose(self, write_probe=write_probe)

    def rotate_registry_credentials(self, registry: str) -> str:
        """Start a rotation of a scoped-token registry: the next plan replaces every deployment that embeds
        the current token. Returns the new credential version."""
        return self.registries.rotate(registry)
