"""The ``ml_api.ModelRegistry`` protocol on azure-ai-ml (Azure ML SDK v2, ``azure.ml.sdk: v2``).

The same semantics as the azureml-core adapter in ``ml.py`` (which this module does not import, nor it this
one: an import-linter contract keeps the two SDKs apart):

* versions by content: the fingerprint of the files is an (immutable) property of each version; a version
  is registered only when the plan says the files changed, numbered by the service's ``nextVersion``;
* tags are replaced in place, properties only added (Azure ML never changes one);
* ownership: the ``model.ownership`` keys in the tags, the fingerprint in the properties;
* one model registry per workspace: versions registered through SDK v1 are listed here with the same name,
  number, tags and properties, so switching an environment's SDK registers nothing again.

REST calls (ARM, ``management.azure.com``; the emulator's ``aml_v2.py`` serves exactly what azure-ai-ml 1.35
sends): ``list_owned`` ``GET {ws}/models`` (the containers with their tags, + ``nextLink`` pages), then
``GET {ws}/models/{name}/versions`` (+ pages), 8 at a time, for the names the specs declare and the containers
marked as holding this environment's versions (below): SDK v2 has no workspace-wide listing of versions
filtered by tags (``ModelVersions_List`` is per container), so this is one list per such name where v1 makes
one list in all, and model names of other tools or environments cost nothing. ``register``:
``GET versions?$top=1`` and ``GET models/{name}`` (the SDK's evaluator check and next version number),
``GET datastores/workspaceblobstore``, ``POST .../listSecrets`` (a SAS for the workspace's blob container),
blob ``HEAD``/``PUT``/``PUT ?comp=metadata`` per file under ``LocalUpload/<content hash>/`` (the upload is
skipped when those files were uploaded before), then ``PUT {ws}/models/{name}/versions/{n}``, and the
container's marker (below) when it lacks it. ``update``: ``GET`` + ``PUT`` of the version. ``delete_owned``:
SDK v2 cannot delete a model version (``MLClient.models`` has ``archive`` only): the versions are archived,
which hides them from listings and from the next plan; they can be restored in Azure ML studio.

Build records (``DatastoreRecords``, the ``build_record.RecordStore`` of SDK v2): SDK v2 has no artifact service, so
what an ACR Tasks build was given is kept as blobs of the default datastore, beside the model files v2 uploads.

**The ownership index.** A model container (a model name) whose versions this environment owns carries the
tag ``edge-reconciler.owner.<environment>: "true"`` (``container_marker``), so that ``list_owned`` reads the
versions of a name the specs no longer declare (to prune them) without reading every name of the workspace.
The marker is written (``GET`` + ``PUT {ws}/models/{name}``, ``ModelContainers_CreateOrUpdate``, a documented
ARM call sent through azure-core with the same credential, scope and retrier: ``MLClient`` has no public call
for container tags) after a register, and at the start of every apply (``index_owned_names``) for each
container the last listing found owned versions in without the marker: versions registered through SDK v1, or
before the index existed. Until then the index is not trusted: a listing trusts it only when a declared name
holding owned versions carries the marker (the apply marks the names no longer declared first, the declared
ones last, so an interrupted apply leaves it untrusted), and otherwise reads every container, as before. A
prune that archives every owned version of a name removes the marker. The marker is only an index of where
to look: ownership is still decided per version, by its tags; a container whose marker was removed by hand,
or lost to another environment's ``PUT`` of the same container at the same moment, is read while its name is
declared, and marked again by the next apply.

SDK imports are lazy (inside functions), like ``ml.py``'s. azure-ai-ml prints upload progress on stderr and
notices on stdout; every SDK call that may print runs with both captured.
"""

from __future__ import annotations

import contextlib
import functools
import io
import shutil
import tempfile
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from reconciler.errors import PermanentProviderError
from reconciler.model import ownership
from reconciler.model.specs import ModelSpec, RegisteredSource
from reconciler.model.state import ModelVersion
from reconciler.providers.azure import errors
from reconciler.providers.azure.auth import MANAGEMENT_SCOPE
from reconciler.providers.azure.blobs import downloaded_model
from reconciler.providers.azure.build_record import RECORD_ORIGIN, record_name
from reconciler.providers.azure.retry import Retrier
from reconciler.providers.azure.workspace import RegistryLookup, WorkspaceAddress, identity_fingerprint
from reconciler.providers.base import Progress

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

T = TypeVar("T")

LIST_WORKERS = 8  # version listings in flight at once, as the ACR tag listings
DEFAULT_DATASTORE = "workspaceblobstore"  # where azure-ai-ml uploads model files, and build records go
ARM_ENDPOINT = "https://management.azure.com"  # MLClient's, for the public cloud (the only one configured here)
MLCLIENT_SCOPE = f"{ARM_ENDPOINT}/.default"  # the scope MLClient asks tokens for (public cloud)
MODELS_API_VERSION = "2023-08-01-preview"  # what azure-ai-ml 1.35 sends for model containers and versions
MARKED = "true"


def container_marker(environment: str) -> str:
    """The tag on a model container that says ``environment`` owns versions in it (see the module docstring)."""
    return f"edge-reconciler.owner.{environment}"


def _mutable_tags(tags: dict[str, str]) -> dict[str, str]:
    """The fingerprint goes into the (immutable) properties, everything else into the tags (as in v1)."""
    return {k: v for k, v in tags.items() if k != ownership.FINGERPRINT}


def _has(model: Any, fingerprint: str, properties: dict[str, str]) -> bool:
    registered = dict(model.properties or {})
    return registered.get(ownership.FINGERPRINT) == fingerprint and all(
        registered.get(k) == v for k, v in properties.items())


def _to_version(model: Any, name: str | None = None, *, referenced: bool = False) -> ModelVersion:
    """``referenced``: a version a spec names as its source, which has a fingerprint even when no reconciler
    registered it (the same one v1 gives it: ``workspace.identity_fingerprint``)."""
    tags, properties = dict(model.tags or {}), dict(model.properties or {})
    name = name or model.name
    fingerprint = properties.get(ownership.FINGERPRINT) or (
        identity_fingerprint(name, int(model.version)) if referenced else None)
    return ModelVersion(
        name=name, version=int(model.version), fingerprint=fingerprint,
        description=model.description or "", tags=ownership.user_tags(tags),
        properties=ownership.user_tags(properties), owner=ownership.owner_of(tags),
    )


class MLClientConnection(WorkspaceAddress):
    """One workspace through ``azure.ai.ml.MLClient``, built on first use; every SDK call goes through the
    provider's ``Retrier``. The client is built with azure-core's retries off (``MLClient`` hands its keyword
    arguments to every ARM client it builds: the ``Retrier`` alone repeats, and only what is safe to repeat), the
    one ARM scope every other client uses, and a hook counting responses (``CallStats.http["aml"]``). The blob
    uploads keep azure-storage-blob's own retries: the SDK builds that client itself, with no supported setting
    (as azureml-core's artifact uploads in v1); a repeated blob ``PUT`` of the same content is harmless."""

    def __init__(self, subscription_id: str, resource_group: str, workspace_name: str,
                 credential: TokenCredential, retrier: Retrier | None = None,
                 registry_lookup: RegistryLookup | None = None) -> None:
        super().__init__(subscription_id, resource_group, workspace_name, credential, retrier, registry_lookup)
        # Writes swap the process-wide stdout/stderr (the SDK prints): one at a time.
        self._quiet = threading.Lock()
        self._building = threading.Lock()

    @property
    def client(self) -> Any:
        """The ``MLClient``, built once (by whichever thread asks first). It asks for a token of its own scope
        (``MLCLIENT_SCOPE``: it sets the scope of the cloud's resource manager whatever it is given), fetched
        here once: the version listings start 8 at a time, and each would ask AAD itself on an empty cache."""
        with self._building:
            if "_client" not in self.__dict__:
                from azure.ai.ml import MLClient

                stats = self.retrier.stats
                self.__dict__["_client"] = MLClient(
                    self.credential, self.subscription_id, self.resource_group, self.workspace_name,
                    show_progress=False, retry_total=0, credential_scopes=[MANAGEMENT_SCOPE],
                    raw_response_hook=lambda response: stats.count_http("aml"))
                with contextlib.suppress(Exception):  # a failure shows in the call that needs the token
                    self.credential.get_token(MLCLIENT_SCOPE)
            return self.__dict__["_client"]

    @cached_property
    def registry_id(self) -> str:
        """The ARM id of the workspace's container registry ('' when none is attached): ``MLClient.workspaces
        .get`` (``GET {ws}``), the one read of the workspace; model calls never need it."""
        workspace = self.call(lambda: self.client.workspaces.get(self.workspace_name),
                              what=f"workspace {self.workspace_name}", write=False)
        return str(workspace.container_registry or "")

    @cached_property
    def _arm(self) -> Any:
        """An azure-core pipeline to ARM for the model container calls ``MLClient`` has no public method for:
        the credential's bearer token for the one ARM scope, no retries of its own (the ``Retrier`` repeats),
        responses counted as ``aml``."""
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import (
            BearerTokenCredentialPolicy,
            CustomHookPolicy,
            HeadersPolicy,
            UserAgentPolicy,
        )

        stats = self.retrier.stats
        policies = [HeadersPolicy(), UserAgentPolicy(sdk_moniker="edge-reconciler"),
                    BearerTokenCredentialPolicy(self.credential, MANAGEMENT_SCOPE),
                    CustomHookPolicy(raw_response_hook=lambda response: stats.count_http("aml"))]
        return PipelineClient(ARM_ENDPOINT, policies=policies)

    def _models_path(self, name: str | None = None) -> str:
        path = (f"{ARM_ENDPOINT}/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}/models")
        return f"{path}/{quote(name, safe='')}" if name is not None else path

    def _send(self, method: str, url: str, body: Any = None) -> Any:
        from azure.core.exceptions import ResourceNotFoundError, map_error
        from azure.core.rest import HttpRequest

        params = {} if "api-version=" in url else {"api-version": MODELS_API_VERSION}
        response = self._arm.send_request(HttpRequest(method, url, params=params, json=body))
        map_error(response.status_code, response, {404: ResourceNotFoundError})  # as the SDKs' clients do
        response.raise_for_status()
        return response.json()

    def containers(self) -> dict[str, dict[str, str]]:
        """Every active model container of the workspace, name -> its tags: ``ModelContainers_List`` (+
        ``nextLink`` pages), the request ``MLClient.models.list()`` makes, whose ``Model`` objects drop the
        container's tags."""

        def fetch() -> dict[str, dict[str, str]]:
            found: dict[str, dict[str, str]] = {}
            url: str | None = self._models_path()
            while url:
                page = self._send("GET", url)
                for item in page.get("value") or []:
                    found[str(item["name"])] = dict((item.get("properties") or {}).get("tags") or {})
                url = page.get("nextLink")
            return found

        return self.call(fetch, what="models", write=False)

    def tag_container(self, name: str, key: str, value: str | None) -> None:
        """Set (or, with None, remove) one tag of container ``name``, keeping everything else it carries:
        ``GET`` then ``PUT`` of the whole container (``ModelContainers_CreateOrUpdate`` replaces it). The same
        values again after a lost answer change nothing: a repeat is safe."""
        from azure.core.exceptions import ResourceNotFoundError

        def write() -> None:
            try:
                current = self._send("GET", self._models_path(name))
            except ResourceNotFoundError:
                return  # no container: nothing to mark (or unmark)
            props = dict(current.get("properties") or {})
            tags = dict(props.get("tags") or {})
            if tags.get(key) == value or (value is None and key not in tags):
                return
            if value is None:
                tags.pop(key)
            else:
                tags[key] = value
            body = {"properties": {"description": props.get("description"), "tags": tags,
                                   "properties": dict(props.get("properties") or {}),
                                   "isArchived": bool(props.get("isArchived", False))}}
            self._send("PUT", self._models_path(name), body)

        self.call(write, what=f"model/{name} (container tags)", write=True, repeatable=True)

    def call(self, fn: Callable[[], T], *, what: str, write: bool, repeatable: bool = False,
             recover: Callable[[], T | None] | None = None, quiet: bool = False) -> T:
        """One SDK call through the retrier; ``quiet`` keeps its prints off the CLI's stdout and stderr."""

        def run() -> T:
            if not quiet:
                return fn()
            with self._quiet, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return fn()

        return self.retrier.call(run, what=what, write=write, repeatable=repeatable, recover=recover)


class MLClientModelRegistry:
    """``ml_api.ModelRegistry`` on ``MLClient.models`` (see the module docstring)."""

    def __init__(self, connection: MLClientConnection, environment: str) -> None:
        self._connection = connection
        self._environment = environment
        self._call = connection.call
        self._unmarked: list[str] = []  # containers the last listing found owned versions in, without the marker

    @property
    def _models(self) -> Any:
        return self._connection.client.models

    def _versions(self, name: str) -> list[Any]:
        """Every active version of ``name`` (SDK ``Model`` objects), any owner: one list, + pages."""
        from azure.core.exceptions import ResourceNotFoundError

        def fetch() -> list[Any]:
            try:
                return list(self._models.list(name=name))
            except ResourceNotFoundError:
                return []

        return self._call(fetch, what=f"model/{name}", write=False)

    def _owned(self, name: str) -> list[Any]:
        return [m for m in self._versions(name) if ownership.owner_of(dict(m.tags or {})) == self._environment]

    def _owned_in(self, names: list[str]) -> dict[str, list[Any]]:
        with ThreadPoolExecutor(max_workers=LIST_WORKERS, thread_name_prefix="aml-versions") as pool:
            return dict(zip(names, pool.map(self._owned, names), strict=True))

    def list_owned(self, names: Collection[str] = ()) -> list[ModelVersion]:
        """The versions of the declared ``names`` and of the containers the ownership index marks; every
        container's when the index is not trusted yet (see the module docstring)."""
        containers = self._connection.containers()
        marker = container_marker(self._environment)
        declared = {name for name in names if name in containers}
        listed = self._owned_in(sorted(declared | {n for n, tags in containers.items() if marker in tags}))
        if not any(marker in containers[name] for name in declared if listed[name]):
            listed.update(self._owned_in(sorted(set(containers) - set(listed))))
        # Declared names last: an apply that stops half-way through marking leaves the index untrusted.
        self._unmarked = sorted((name for name, versions in listed.items()
                                 if versions and marker not in containers[name]), key=lambda n: (n in declared, n))
        return [_to_version(m, name) for name, versions in sorted(listed.items()) for m in versions]

    def index_owned_names(self) -> None:
        """``ml_api.OwnedNamesIndex``: mark the containers the last listing found owned versions in, unmarked."""
        marker = container_marker(self._environment)
        while self._unmarked:
            self._connection.tag_container(self._unmarked[0], marker, MARKED)
            self._unmarked.pop(0)

    def _get(self, name: str, version: int) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        def fetch() -> Any | None:
            try:
                return self._models.get(name=name, version=str(version))
            except ResourceNotFoundError:
                return None

        return self._call(fetch, what=f"model/{name}:{version}", write=False)

    def version(self, name: str, version: int) -> ModelVersion | None:
        model = self._get(name, version)
        return _to_version(model, name) if model is not None else None

    def referenced(self, sources: list[RegisteredSource]) -> list[ModelVersion]:
        """The versions specs name as their source, whoever owns them: one ``GET`` each (missing: left out)."""
        found = []
        for source in sources:
            model = self._get(source.name, source.version)
            if model is not None:
                found.append(_to_version(model, source.name, referenced=True))
        return found

    def newest(self, name: str, fingerprint: str) -> ModelVersion | None:
        matching = [_to_version(m, name) for m in self._owned(name) if _has(m, fingerprint, {})]
        return max(matching, key=lambda m: m.version, default=None)

    def register(self, spec: ModelSpec, fingerprint: str, tags: dict[str, str], progress: Progress) -> None:
        if spec.uri is None:
            assert spec.path is not None
            self._register(spec, spec.path, fingerprint, tags, progress)
            return
        # A model from a blob: downloaded once, checked, and that very file uploaded (see ``blobs``).
        connection = self._connection
        with downloaded_model(spec, connection.credential, connection.retrier, progress) as path:
            self._register(spec, path, fingerprint, tags, progress)

    def _register(self, spec: ModelSpec, path: Path, fingerprint: str, tags: dict[str, str],
                  progress: Progress) -> None:
        from azure.ai.ml.entities import Model

        progress.step(f"registering model {spec.name}")
        known = {int(m.version) for m in self._versions(spec.name)}

        def register() -> Any:
            # version=None: the SDK takes the container's nextVersion, as v1's service numbers versions.
            return self._models.create_or_update(Model(
                path=str(path), name=spec.name, type="custom_model", description=spec.description or None,
                tags=_mutable_tags(tags), properties={**spec.properties, ownership.FINGERPRINT: fingerprint}))

        def registered() -> Any | None:
            """What this register created, after a lost answer: a new owned version with these files. A
            repeated ``PUT`` of a version number updates that version, so there are no twins to remove."""
            new = [m for m in self._owned(spec.name) if int(m.version) not in known
                   and _has(m, fingerprint, spec.properties)]
            return min(new, key=lambda m: int(m.version)) if new else None

        self._call(register, what=f"model/{spec.name}", write=True, recover=registered, quiet=True)
        self._connection.tag_container(spec.name, container_marker(self._environment), MARKED)

    def update(self, version: ModelVersion, description: str, tags: dict[str, str],
               added_properties: dict[str, str]) -> None:
        """One ``PUT`` of the version: the SDK sends tags and the description whole, and the properties
        (the existing ones, which the service keeps as they are, plus the added ones)."""
        what = f"model/{version.name}:{version.version}"
        model = self._get(version.name, version.version)
        if model is None:
            raise PermanentProviderError("this version no longer exists; run `reconciler plan` again", resource=what)
        model.tags = _mutable_tags(tags)
        model.description = description or None
        model.properties = {**dict(model.properties or {}), **added_properties}
        # The same values again after a lost answer change nothing: a repeat is safe.
        self._call(lambda: self._models.create_or_update(model), what=what, write=True, repeatable=True,
                   quiet=True)

    def delete_owned(self, name: str) -> None:
        """Archive every owned version (SDK v2 has no delete; see the module docstring)."""
        for model in self._owned(name):
            what = f"model/{name}:{model.version}"

            def archive(version: str = str(model.version)) -> None:
                try:
                    self._models.archive(name=name, version=version)
                except Exception as exc:
                    if errors.describe(exc).status != 404:  # gone already
                        raise

            self._call(archive, what=what, write=True, repeatable=True, quiet=True)
        # Nothing of this environment is left under the name (the apply holds the environment's lock): out of
        # the index.
        self._connection.tag_container(name, container_marker(self._environment), None)


class DatastoreRecords:
    """``build_record.RecordStore`` on SDK v2, which has no artifact service: build records are blobs of the
    workspace's default datastore (``workspaceblobstore``, the blob container azure-ai-ml uploads model files to,
    under ``LocalUpload/<content hash>/``), under ``LocalUpload/<build_record.record_name>/``: the same names as v1's
    artifact records, in the same storage account. Models are fetched with ``MLClient.models.download``.

    REST calls: the container, once per run: ``GET {ws}/datastores/workspaceblobstore`` and ``POST .../listSecrets``
    (``MLClient.datastores.get(include_secrets=True)``: a SAS for the container, registered as a secret);
    ``recorded`` one List Blobs (``GET /{container}?restype=container&comp=list&prefix=...``, + ``NextMarker``
    pages of 5,000); ``upload_record`` one blob ``PUT`` per file; ``read_recorded`` one blob ``GET``;
    ``download_model`` what ``models.download`` sends: ``GET`` of the version, ``GET`` datastore and ``POST
    listSecrets`` again, a blob ``HEAD`` and a List Blobs (is the path a folder), a List Blobs of the path, and a
    blob ``GET`` per file. The container client is built with azure-core's retries off (the ``Retrier`` repeats);
    ``models.download`` builds its own client, with the storage SDK's retries."""

    def __init__(self, connection: MLClientConnection) -> None:
        self._connection = connection
        self._call = connection.call
        self._opening = threading.Lock()  # ACR Tasks builds run concurrently: the datastore is read once

    @property
    def _container(self) -> Any:
        with self._opening:
            if "_client" not in self.__dict__:
                self.__dict__["_client"] = self._open()
            return self.__dict__["_client"]

    def _open(self) -> Any:
        from azure.storage.blob import ContainerClient

        datastore = self._call(lambda: self._connection.client.datastores.get(DEFAULT_DATASTORE, include_secrets=True),
                               what=f"datastore {DEFAULT_DATASTORE}", write=False)
        sas = getattr(datastore.credentials, "sas_token", None)
        if not sas:
            raise PermanentProviderError(
                "the workspace's default datastore handed out no SAS token for its container (an identity-based "
                "datastore?): build records need one", resource=f"datastore {DEFAULT_DATASTORE}")
        errors.register_secret(str(sas))
        stats = self._connection.retrier.stats
        endpoint = datastore.endpoint or "core.windows.net"
        return ContainerClient(f"https://{datastore.account_name}.blob.{endpoint}", datastore.container_name,
                               credential=str(sas), retry_total=0,
                               raw_response_hook=lambda response: stats.count_http("aml"))

    @staticmethod
    def _folder(name: str, label: str) -> str:
        return f"{RECORD_ORIGIN}/{record_name(name, label)}/"

    def recorded(self, name: str, label: str) -> dict[str, str]:
        from azure.core.exceptions import ResourceNotFoundError

        folder, container = self._folder(name, label), self._container

        def listing() -> dict[str, str]:
            try:
                return {blob.name[len(folder):]: blob.name for blob in container.list_blobs(name_starts_with=folder)}
            except ResourceNotFoundError:  # the container itself is missing: nothing was ever uploaded
                return {}

        return self._call(listing, what=f"image/{name}:{label} (recorded inputs)", write=False)

    def upload_record(self, name: str, label: str, files: dict[str, Path], what: str) -> None:
        folder, container = self._folder(name, label), self._container
        for path, file in files.items():
            # The same bytes again after a lost answer: a repeat is harmless.
            upload = functools.partial(container.upload_blob, f"{folder}{path}", file.read_bytes(), overwrite=True)
            self._call(upload, what=f"{what}: {path}", write=True, repeatable=True)

    def read_recorded(self, path: str, handle: str, target: Path) -> None:
        container = self._container
        data = self._call(lambda: container.download_blob(handle).readall(), what=f"{path} (recorded inputs)",
                          write=False)
        target.write_bytes(data)

    def download_model(self, name: str, version: int, destination: Path) -> None:
        """``models.download`` writes ``<download_path>/<name>/`` laid out as registered (a folder keeps its name,
        as in v1's ``Model.download``); those files are moved into ``destination``."""
        from azure.core.exceptions import ResourceNotFoundError

        what = f"model/{name}:{version}"
        with tempfile.TemporaryDirectory(prefix="reconciler-model-download-") as folder:
            def download() -> None:
                try:
                    self._connection.client.models.download(name=name, version=str(version), download_path=folder)
                except ResourceNotFoundError as exc:
                    raise PermanentProviderError("the deployed image packages this version, which no longer exists",
                                                 resource=what) from exc

            self._call(download, what=what, write=False, quiet=True)
            destination.mkdir(parents=True, exist_ok=True)
            for item in sorted((Path(folder) / name).iterdir()):
                shutil.move(str(item), destination / item.name)
