"""``AzureProvider``: the Provider protocol on Azure ML + Azure Container Registry + Azure IoT Hub.

Composition only: the adapters do the talking (``iothub.IoTHub``, ``registry.Registries``, ``lock.HubLock``,
and the other helper's ``ml_api.ModelRegistry`` / ``ml_api.ImageBuilder`` for models and images), every SDK
call goes through one ``retry.Retrier`` (whose ``stats`` count the calls), and nothing is imported or
contacted before it is needed.

Semantics match the local backend (``providers/local/provider.py``):

* Models: a new version per new fingerprint; description and tags change in place; delete removes every
  version this environment owns. Images: built once per label; delete removes the tag.
* Deployments: content is immutable. Create writes ``<name>-<hash>`` with the user's labels plus the
  ownership labels, registry passwords filled in at this moment; update changes target condition, priority,
  labels and metrics with the quoted-etag PUT; replace creates the new deployment, then deletes the old one;
  delete removes an owned deployment (gone already: done) and then registry tokens no deployment embeds.
* Only this environment's resources are written; the ownership labels are checked on a fresh read before an
  update or a delete.

REST calls per operation are listed in docs/azure.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.core import manifest
from reconciler.errors import PermanentProviderError
from reconciler.model import ownership
from reconciler.model.plan import Action, Change, DesiredDeployment, DesiredImage, DesiredModel
from reconciler.model.specs import JSON, DesiredState, EnvironmentSpec, Kind
from reconciler.model.state import ImageVersion, LiveDeployment, ModelVersion, Snapshot
from reconciler.providers.azure import registry as acr
from reconciler.providers.azure.auth import azure_credential, hub_access
from reconciler.providers.azure.iothub import (
    IoTHub,
    is_edge_deployment,
    modules_content,
    owner_of,
    registry_credentials,
)
from reconciler.providers.azure.lock import HubLock, hold
from reconciler.providers.azure.retry import CallStats, Retrier, RetryPolicy
from reconciler.providers.base import LockInfo, Progress

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from reconciler.providers.azure.ml import WorkspaceConnection
    from reconciler.providers.azure.ml_api import ImageBuilder, ModelRegistry

T = TypeVar("T")

REGISTRY_ID = re.compile(r"(?i)/subscriptions/[^/]+/resourceGroups/(?P<rg>[^/]+)/providers/"
                         r"Microsoft\.ContainerRegistry/registries/(?P<name>[^/]+)")


def _expect(value: object, kind: type[T], change: Change) -> T:
    if not isinstance(value, kind):
        raise PermanentProviderError(f"malformed {change.action.value} change: expected a {kind.__name__}",
                                     resource=str(change.key))
    return value


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
        self._lock: HubLock | None = None
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
        return IoTHub(hub_access(self._iot_hub), lambda: self.credential, self.retrier, self.name)

    @cached_property
    def connection(self) -> WorkspaceConnection:
        from reconciler.providers.azure.ml import WorkspaceConnection

        return WorkspaceConnection(self.subscription_id, self.resource_group, self.workspace_name, self.credential,
                                   retrier=self.retrier)

    @cached_property
    def models(self) -> ModelRegistry:
        from reconciler.providers.azure.ml import AzureMLModelRegistry

        return AzureMLModelRegistry(self.connection)

    @cached_property
    def images(self) -> ImageBuilder:
        from reconciler.providers.azure.ml import AzureMLImageBuilder

        return AzureMLImageBuilder(self.connection)

    @cached_property
    def registries(self) -> acr.Registries:
        return acr.Registries(self.name, self.subscription_id, self.resource_group, self.environment.registries,
                              lambda: self.credential, self.retrier, self._workspace_registry)

    def _workspace_registry(self) -> tuple[str, str]:
        """(resource group, name) of the ACR attached to the workspace: where ``acr`` is omitted."""
        what = f"workspace {self.workspace_name}"
        details = self.retrier.call(lambda: self.connection.workspace.get_details(), what=what, write=False)
        match = REGISTRY_ID.search(str((details or {}).get("containerRegistry") or ""))
        if match is None:
            raise PermanentProviderError("the workspace has no container registry attached; name one with `acr:` "
                                         "in environment.yaml", resource=what)
        return match.group("rg"), match.group("name")

    # --- the protocol ---------------------------------------------------------------

    def read_snapshot(self, desired: DesiredState, *, health: bool = False) -> Snapshot:
        configs = [cfg for cfg in self.hub.list_configurations() if is_edge_deployment(cfg)]
        rollout = self.hub.health(configs) if health else {}
        deployments = sorted((self.hub.live_deployment(cfg, rollout.get(cfg.id)) for cfg in configs),
                             key=lambda d: d.id)
        registries = self.registries.read(self._embedded_tokens(configs))
        models = sorted(self.models.list_owned(self.name), key=lambda m: (m.name, m.version))
        images = sorted(self.images.list_owned(self.name, sorted(desired.images)), key=lambda i: (i.name, i.label))
        return Snapshot(environment=self.name, image_registry=self.images.registry, models=tuple(models),
                        images=tuple(images), deployments=tuple(deployments), registries=registries)

    def count_devices(self, target_condition: str) -> int:
        return self.hub.count_devices(target_condition)

    def apply(self, change: Change, desired: DesiredState, progress: Progress) -> None:
        if self._lock is not None:
            self._lock.renew_if_needed()
        if change.key.kind is Kind.MODEL:
            self._apply_model(change)
        elif change.key.kind is Kind.IMAGE:
            self._apply_image(change, progress)
        else:
            self._apply_deployment(change, desired)

    def lock(self, holder: str) -> AbstractContextManager[None]:
        return self._locked(holder)

    @contextmanager
    def _locked(self, holder: str) -> Iterator[None]:
        with hold(HubLock(self.hub, self.name, holder, self._lock_ttl)) as lock:
            self._lock = lock
            try:
                yield
            finally:
                self._lock = None

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

    # --- models and images ----------------------------------------------------------

    def _apply_model(self, change: Change) -> None:
        if change.action is Action.DELETE:
            self.models.delete_all(_expect(change.actual, ModelVersion, change).name, self.name)
        elif change.action is Action.CREATE or change.new_version:
            model = _expect(change.desired, DesiredModel, change)
            self.models.register(model.spec, model.fingerprint, self.name)
        elif change.action is Action.UPDATE:
            self.models.update(_expect(change.actual, ModelVersion, change),
                               _expect(change.desired, DesiredModel, change).spec)
        else:
            raise PermanentProviderError("models cannot be replaced", resource=str(change.key))

    def _apply_image(self, change: Change, progress: Progress) -> None:
        if change.action is Action.DELETE:
            self.images.delete(_expect(change.actual, ImageVersion, change))
        elif change.action is Action.CREATE or change.new_version:
            image = _expect(change.desired, DesiredImage, change)
            self.images.build(image, self._packaged_models(image), self.name, progress)
        else:
            raise PermanentProviderError("images are immutable: only new versions are built", resource=str(change.key))

    def _packaged_models(self, image: DesiredImage) -> list[ModelVersion]:
        """The newest owned version of each model with the fingerprint the image's label stands for."""
        owned = self.models.list_owned(self.name)
        chosen = []
        for name, fingerprint in sorted(image.model_fingerprints.items()):
            matching = [m for m in owned if m.name == name and m.fingerprint == fingerprint]
            if not matching:
                raise PermanentProviderError(
                    f"no version of model {name} owned by environment {self.name!r} has the files this image "
                    f"packages (fingerprint {fingerprint[:12]}): the model was not registered; run `reconciler "
                    "plan` and apply the model first", resource=f"model/{name}")
            chosen.append(max(matching, key=lambda m: m.version))
        return chosen

    # --- deployments ----------------------------------------------------------------

    def _apply_deployment(self, change: Change, desired: DesiredState) -> None:
        if change.action is Action.CREATE:
            self._create(_expect(change.desired, DesiredDeployment, change), desired, None)
        elif change.action is Action.UPDATE:
            deployment = _expect(change.desired, DesiredDeployment, change)
            live = _expect(change.actual, LiveDeployment, change)
            spec = deployment.spec
            self.hub.update(live.id, dict(spec.labels), deployment.target_condition, spec.priority,
                            dict(spec.metrics))
        elif change.action is Action.REPLACE:
            deployment = _expect(change.desired, DesiredDeployment, change)
            old_id = _expect(change.actual, LiveDeployment, change).id
            configs = self.hub.list_configurations()
            old = next((cfg for cfg in configs if cfg.id == old_id), None)
            if old is not None:
                self.hub.check_owned(old)  # refuse before creating anything
            self._create(deployment, desired, configs)
            if old is not None:
                self._delete(old, configs, keep=self._usernames(deployment.content))
        else:
            old_id = _expect(change.actual, LiveDeployment, change).id
            configs = self.hub.list_configurations()
            old = next((cfg for cfg in configs if cfg.id == old_id), None)
            if old is not None:  # gone already: the plan's intent holds
                self._delete(old, configs, keep={})

    def _create(self, deployment: DesiredDeployment, desired: DesiredState, configs: list[Any] | None) -> None:
        spec = deployment.spec
        listed: list[list[Any]] = [configs] if configs is not None else []

        def embedded(registry: str, username: str) -> str | None:
            if not listed:
                listed.append(self.hub.list_configurations())
            return self._embedded_password(listed[0], registry, username)

        credentials = registry_credentials(deployment.content)
        passwords, versions = {}, {}
        for registry in deployment.registries:
            entry = credentials.get(registry)
            if entry is None or entry.get("password") != manifest.password_placeholder(registry):
                raise PermanentProviderError(f"the content has no credentials for registry {registry!r}; run "
                                             "`reconciler plan` again", resource=deployment.id)
            username, address = str(entry.get("username")), str(entry.get("address"))
            repositories = {repo for image in manifest.module_images(deployment.content).values()
                            if (repo := acr.repository_of(image, address))}
            if not repositories:
                repositories = set(desired.images) if address.lower() == self.images.registry.lower() else set()
            password = self.registries.password(registry, username, repositories, embedded)
            passwords[registry] = password
            versions[registry] = self._credential_version(registry, username, password)
        if manifest.content_hash(deployment.content, versions) != deployment.content_hash:
            raise PermanentProviderError("the registry credentials changed since the plan was made (a rotation or "
                                         "a regenerated password); run `reconciler plan` again",
                                         resource=deployment.id)
        content = manifest.fill_passwords(deployment.content, passwords)
        if any(manifest.password_placeholder(r) in manifest.canonical_json(content) for r in deployment.registries):
            raise PermanentProviderError("a registry password placeholder did not resolve", resource=deployment.id)
        labels = {**spec.labels, **ownership.ownership_tags(self.name, spec.name, deployment.content_hash)}
        self.hub.create(deployment.id, content, labels, deployment.target_condition, spec.priority,
                        dict(spec.metrics))

    def _credential_version(self, registry: str, username: str, password: str) -> str:
        if self.registries.ref(registry).mode == acr.ADMIN_USER:
            return acr.admin_version(username, password)
        version = acr.token_version(acr.token_prefix(self.name, registry), username)
        return acr.credential_version(version or 0)

    def _delete(self, cfg: Any, configs: list[Any], keep: dict[str, set[str]]) -> None:
        """Delete an owned deployment, then the tokens of older versions that no owned deployment embeds.
        ``keep``: usernames per registry of a deployment created in the same change (not in ``configs``)."""
        self.hub.delete(cfg)
        released = registry_credentials(modules_content(cfg) or {})
        remaining = [c for c in configs if c.id != cfg.id and owner_of(c) == self.name and is_edge_deployment(c)]
        for registry in sorted(set(released) & set(self.environment.registries)):
            in_use = set(keep.get(registry, set()))
            for other in remaining:
                entry = registry_credentials(modules_content(other) or {}).get(registry)
                if entry is not None:
                    in_use.add(str(entry.get("username")))
            self.registries.release_unused(registry, in_use)

    @staticmethod
    def _usernames(content: dict[str, JSON]) -> dict[str, set[str]]:
        return {name: {str(entry.get("username"))} for name, entry in registry_credentials(content).items()}

    def _embedded_tokens(self, configs: list[Any]) -> dict[str, dict[str, datetime | None]]:
        """Registry -> username -> creation time of the oldest owned deployment embedding it."""
        found: dict[str, dict[str, datetime | None]] = {}
        for cfg in configs:
            if owner_of(cfg) != self.name:
                continue
            created = cfg.created_time_utc if isinstance(cfg.created_time_utc, datetime) else None
            for registry, entry in registry_credentials(modules_content(cfg) or {}).items():
                users = found.setdefault(registry, {})
                username = str(entry.get("username"))
                previous = users.get(username)
                if username not in users or (created is not None and (previous is None or created < previous)):
                    users[username] = created
        return found

    def _embedded_password(self, configs: list[Any], registry: str, username: str) -> str | None:
        """The password an owned deployment embeds for ``username`` (the newest such deployment's)."""
        owned = [cfg for cfg in configs if owner_of(cfg) == self.name and is_edge_deployment(cfg)]
        owned.sort(key=lambda cfg: str(cfg.created_time_utc or ""), reverse=True)
        for cfg in owned:
            entry = registry_credentials(modules_content(cfg) or {}).get(registry)
            password = entry.get("password") if entry else None
            if (entry is not None and str(entry.get("username")) == username and isinstance(password, str)
                    and password and password != manifest.password_placeholder(registry)):
                return password
        return None

    # --- beyond the protocol --------------------------------------------------------

    def rotate_registry_credentials(self, registry: str) -> str:
        """Start a rotation of a scoped-token registry: the next plan replaces every deployment that embeds
        the current token. Returns the new credential version."""
        return self.registries.rotate(registry)
