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
from contextlib import AbstractContextManager, ExitStack, suppress
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import PermanentProviderError, SpecError
from reconciler.model.diagnostics import Diagnostic
from reconciler.model.specs import DesiredState, EnvironmentSpec, ModelSpec, UriSource
from reconciler.model.state import ImageVersion, ModelVersion, PromotionSource, Snapshot
from reconciler.providers.azure import registry as acr
from reconciler.providers.azure.auth import MANAGEMENT_SCOPE, azure_credential, hub_access
from reconciler.providers.azure.blobs import downloaded_model, read_blob
from reconciler.providers.azure.deployments import AcrCredentials, HubDeployments, embedded_tokens
from reconciler.providers.azure.iothub import IoTHub, is_edge_deployment
from reconciler.providers.azure.lock import HubLock, hold
from reconciler.providers.azure.password_store import HubPasswordStore
from reconciler.providers.azure.queries import DEFAULT_BUDGET
from reconciler.providers.azure.retry import CallStats, Retrier, RetryPolicy
from reconciler.providers.base import Adapters, BuiltImage, Check, HeldLock, LockInfo, Progress, SilentProgress

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from reconciler.providers.azure.build_record import BuildRecords
    from reconciler.providers.azure.ml import WorkspaceConnection
    from reconciler.providers.azure.ml_api import ImageBuilder, ModelRegistry
    from reconciler.providers.azure.registry_images import RegistryTarget

SDK_V1, SDK_V2 = "v1", "v2"  # azure.ml.sdk
ML_SDKS = (SDK_V1, SDK_V2)
AML_BUILDER, ACR_TASKS_BUILDER = "aml", "acr-tasks"  # azure.images.builder
IMAGE_BUILDERS = (AML_BUILDER, ACR_TASKS_BUILDER)


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
            self.ml_sdk = str(dict(settings.get("ml") or {}).get("sdk", SDK_V1))
            # The default builder: Azure ML's on SDK v1, ACR Tasks on v2 (the only one there).
            self.image_builder = str(dict(settings.get("images") or {}).get(
                "builder", ACR_TASKS_BUILDER if self.ml_sdk == SDK_V2 else AML_BUILDER))
        except (KeyError, TypeError) as exc:
            raise PermanentProviderError(f"environment.yaml lacks the Azure setting {exc}; run `reconciler "
                                         "validate`", resource=f"environment {self.name}") from exc
        if self.ml_sdk not in ML_SDKS:
            raise PermanentProviderError(f"azure.ml.sdk is {self.ml_sdk!r}; use one of {', '.join(ML_SDKS)}",
                                         resource=f"environment {self.name}")
        if self.image_builder not in IMAGE_BUILDERS:
            raise PermanentProviderError(f"azure.images.builder is {self.image_builder!r}; use one of "
                                         f"{', '.join(IMAGE_BUILDERS)}", resource=f"environment {self.name}")
        if self.ml_sdk == SDK_V2 and self.image_builder == AML_BUILDER:  # the schema refuses it too
            raise PermanentProviderError("azure.images.builder: aml needs azure.ml.sdk: v1 (SDK v2 has no image "
                                         "build service); use acr-tasks", resource=f"environment {self.name}")
        # Model spec name -> its path, from the desired state of the last snapshot: the files ACR Tasks builds
        # images from (an apply always plans, so reads a snapshot, before it builds).
        self._model_specs: dict[str, ModelSpec] = {}
        self._downloads = ExitStack()  # models from blobs an ACR Tasks build packaged: removed on close
        self._downloaded: dict[str, Path] = {}
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
    def connection(self) -> RegistryTarget:
        """The workspace through the SDK ``azure.ml.sdk`` names: azureml-core (v1, ``ml.py``) or azure-ai-ml
        (v2, ``ml_v2.py``)."""
        if self.ml_sdk == SDK_V2:
            from reconciler.providers.azure.ml_v2 import MLClientConnection

            return MLClientConnection(self.subscription_id, self.resource_group, self.workspace_name,
                                      self.credential, retrier=self.retrier,
                                      registry_lookup=self.registries.read_already)
        return self._v1_connection

    @cached_property
    def _v1_connection(self) -> WorkspaceConnection:
        from reconciler.providers.azure.ml import WorkspaceConnection

        return WorkspaceConnection(self.subscription_id, self.resource_group, self.workspace_name, self.credential,
                                   retrier=self.retrier, registry_lookup=self.registries.read_already)

    @cached_property
    def models(self) -> ModelRegistry:
        if self.ml_sdk == SDK_V2:
            from reconciler.providers.azure.ml_v2 import MLClientConnection, MLClientModelRegistry

            connection = self.connection
            assert isinstance(connection, MLClientConnection)
            return MLClientModelRegistry(connection, self.name)
        from reconciler.providers.azure.ml import AzureMLModelRegistry

        return AzureMLModelRegistry(self._v1_connection, self.name)

    def _refuse_unbuildable(self, desired: DesiredState) -> None:
        """ACR Tasks builds from files on this machine: a registered version (``spec.source.registered``) that an
        image packages has its files in Azure ML only. Refused before any change, at the spec's field."""
        if self.image_builder != ACR_TASKS_BUILDER:
            return
        packaged = {name for image in desired.images.values() for name in image.models}
        problems = [Diagnostic(spec.registered.location, f"Model/{name}", "spec.source.registered",
                               f"images built by ACR Tasks (azure.images.builder: {ACR_TASKS_BUILDER}, the builder of "
                               "SDK v2) package model files from this machine, and a registered version's files are "
                               "in Azure ML only; name the files (spec.path or spec.source.uri), or build with "
                               "azure.images.builder: aml on azure.ml.sdk: v1")
                    for name, spec in sorted(desired.models.items())
                    if spec.registered is not None and name in packaged]
        if problems:
            raise SpecError(problems)

    def _model_files(self, name: str) -> Path | None:
        """The files of Model spec ``name`` on this machine, for an ACR Tasks build: its folder in the repository,
        or, for a model from a blob (``spec.source.uri``), a folder holding that one file, downloaded and checked
        once per run; None for a registered version (``spec.source.registered``: its files are in Azure ML)."""
        spec = self._model_specs.get(name)
        if spec is None or spec.uri is None:
            return spec.path if spec is not None else None
        if name not in self._downloaded:
            file = self._downloads.enter_context(
                downloaded_model(spec, self.credential, self.connection.retrier, SilentProgress()))
            self._downloaded[name] = file.parent
        return self._downloaded[name]

    @cached_property
    def images(self) -> ImageBuilder:
        """The builder ``azure.images.builder`` names: Azure ML's ``Model.package`` (``aml``, the default on
        SDK v1, which it needs) or ACR Tasks (``acr-tasks``, the default and only builder on SDK v2). Both push
        ``<name>:<label>`` into the workspace's registry."""
        if self.image_builder == ACR_TASKS_BUILDER:
            from reconciler.providers.azure.acr_tasks import AcrTasksImageBuilder

            return AcrTasksImageBuilder(self.connection, self.name, self._model_files, self._build_records())
        from reconciler.providers.azure.ml import AzureMLImageBuilder

        return AzureMLImageBuilder(self._v1_connection, self.name)

    def _build_records(self) -> BuildRecords:
        """Where builds record their inputs (``build_record``): the workspace's artifacts on SDK v1 (the record
        ``Model.package`` builds keep too), blobs of its default datastore on SDK v2 (no artifact service there)."""
        from reconciler.providers.azure.build_record import BuildRecords

        if self.ml_sdk == SDK_V2:
            from reconciler.providers.azure.ml_v2 import DatastoreRecords, MLClientConnection

            connection = self.connection
            assert isinstance(connection, MLClientConnection)
            return BuildRecords(DatastoreRecords(connection))
        from reconciler.providers.azure.ml import ArtifactRecords

        return BuildRecords(ArtifactRecords(self._v1_connection))

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
        """Three chains of reads run side by side, and a plan waits for the longest instead of their sum: the
        models (opening the workspace takes round trips of its own), the hub's deployments (here), and the
        registries then the images (the images need the registry's login server; the registries' reads need
        nothing from the hub, only what is made of them does). The AAD token all need is fetched first, once.
        Each chain makes the same requests whatever the timing: the results do not depend on the order."""
        self._model_specs.update(desired.models)
        self._refuse_unbuildable(desired)
        with suppress(Exception):  # only warms the credential's cache: a failure shows in the calls that need it
            self.credential.get_token(MANAGEMENT_SCOPE)
        assert self.connection is not None and self.registries is not None  # built here once, not in two threads
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="azure-read") as pool:
            listed_models = None if deployments_only else pool.submit(self._models, desired)
            listed_images = pool.submit(self._registries_then_images, desired, deployments_only)
            configs = [cfg for cfg in self.hub.list_configurations() if is_edge_deployment(cfg)]
            rollout = self.hub.health(configs) if health else self.hub.candidate_health(configs)
            deployments = sorted((self.hub.live_deployment(cfg, rollout.get(cfg.id)) for cfg in configs),
                                 key=lambda d: d.id)
            images = listed_images.result()
            registries = self.registries.read(embedded_tokens(configs, self.name), prefetched=True)
            models = [] if listed_models is None else sorted(listed_models.result(),
                                                             key=lambda m: (m.name, m.version))
        return Snapshot(environment=self.name, image_registry=self.images.registry, models=tuple(models),
                        images=tuple(images), deployments=tuple(deployments), registries=registries)

    def _registries_then_images(self, desired: DesiredState, deployments_only: bool) -> list[ImageVersion]:
        self.registries.prefetch()
        if deployments_only:
            return []
        return sorted(self.images.list_owned(sorted(desired.image_names)), key=lambda i: (i.name, i.label))

    def _models(self, desired: DesiredState) -> list[ModelVersion]:
        """The owned versions, and those the specs name as a source (``spec.source.registered``) that are not."""
        owned = self.models.list_owned(sorted(desired.models))
        known = {(m.name, m.version) for m in owned}
        wanted = {(source.name, source.version): source for spec in desired.models.values()
                  if (source := spec.registered) is not None}
        sources = [source for identity, source in sorted(wanted.items()) if identity not in known]
        return owned + (self.models.referenced(sources) if sources else [])

    def model_uri_digest(self, source: UriSource, progress: Progress) -> str:
        """``ModelUris``: the blob streamed through SHA-256 (see ``blobs``)."""
        progress.step(f"reading {source.uri} to check its digest")
        return read_blob(source.uri, self.credential, self.retrier, progress)

    def count_devices(self, target_condition: str) -> int:
        return self.hub.count_devices(target_condition)

    def count_many(self, target_conditions: Sequence[str]) -> dict[str, int | None]:
        return self.hub.count_many(target_conditions)

    def query_usage(self) -> tuple[int, int]:
        """IoT Hub query pages this run spent, and its budget."""
        return self.hub.counter.spent, self.hub.query_budget

    def throttled_requests(self) -> tuple[int, float]:
        """Throttled answers this run waited out (``Retrier``: only the first is logged), and the seconds waited."""
        return self.stats.throttled, self.stats.throttled_wait

    def device_ids(self, target_condition: str) -> list[str]:
        return self.hub.device_ids(target_condition)

    def adapters(self) -> Adapters:
        from reconciler.providers.azure.ml_api import OwnedNamesIndex

        models = self.models
        if isinstance(models, OwnedNamesIndex):  # before any change: see ``ml_v2.MLClientModelRegistry``
            models.index_owned_names()
        return Adapters(self.models, self.images, HubDeployments(self.hub, self.name),
                        AcrCredentials(self.registries, self.hub, self.name))

    def lock(self, holder: str) -> AbstractContextManager[HeldLock]:
        return hold(HubLock(self.hub, self.name, holder, self._lock_ttl))

    def force_unlock(self, lock_id: str) -> LockInfo:
        return HubLock(self.hub, self.name, "force-unlock", self._lock_ttl).force_unlock(lock_id)

    def close(self) -> None:
        """Close what was opened; safe to call twice."""
        self._downloads.close()
        self._downloaded.clear()
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

    def promotable_image(self, name: str, label: str) -> PromotionSource:
        """``PromotionSources``: the digest of ``name:label`` in the workspace registry (one tag listing) and the
        registry's ARM id, which ACR's import in the promoting environment copies from."""
        return PromotionSource(self.name, name, label, self.images.digest(name, label),
                               f"{self.images.registry}/{name}:{label}", self.connection.registry_id)

    def rotate_registry_credentials(self, registry: str) -> str:
        """Start a rotation of a scoped-token registry: the next plan replaces every deployment that embeds
        the current token. Returns the new credential version."""
        return self.registries.rotate(registry)
