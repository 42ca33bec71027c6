"""The ``ml_api`` protocols on azureml-core 1.61 (Azure ML SDK v1), with images read from ACR.

azureml is imported inside functions only: ``reconciler validate`` and plans on the local backend never
load it (about a second of imports). Nothing needs to be set in the environment before that import:
the cloud is named explicitly (``CLOUD``), which keeps azureml from fetching the cloud list from
``management.azure.com/metadata/endpoints``. azureml does fix its discovery cache path
(``~/.azureml/.discovery``) from ``HOME`` at import; tests isolate ``HOME`` themselves.

Traps of the SDK that shape this module (see also the wire notes in the docstrings below):

* ``Model.register`` refuses a ``model_path`` outside the working directory since 1.61: see
  ``_working_directory``.
* ``Model.package`` treats a *string* model id it cannot find as a local path and registers it: only
  ``Model`` objects are passed.
* ``Model.update`` skips falsy values: it can neither clear tags nor a description. Tags always include the
  ownership keys here, so the full-map replace it sends is never empty; an emptied description has its own
  patch (``_clear_description``).
* The SDK prints progress ("Registering model ...") on stdout, which belongs to the CLI (``plan --format
  json``): every call runs with stdout captured (``WorkspaceConnection.call``).
* SDK v1 cannot list built images (``Model.package`` results): they are read from the registry's tags.
* azureml repeats a request on its own (``ClientBase._execute_func``) after a lost answer or a 5xx, even
  a ``POST models`` or ``POST packages``: a register whose answer was lost registered twice. Its
  variable ``AZUREML_DEFAULT_RETRIES`` (read when azureml is first imported) is set to 0 when this
  module is imported, before azureml is, so that the provider's ``Retrier`` is the only one that repeats, and
  only where a repeat is safe: a register or a build whose answer was lost is first looked up
  (``recover``): the newest owned version with this fingerprint, the image with this label.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.errors import PermanentProviderError, ProviderError, TransientProviderError
from reconciler.model import ownership
from reconciler.model.plan import DesiredImage
from reconciler.model.specs import ModelSpec, RegisteredSource
from reconciler.model.state import ImageVersion, ModelVersion
from reconciler.providers.azure import errors
from reconciler.providers.azure.blobs import downloaded_model
from reconciler.providers.azure.build_record import RECORD_ORIGIN, RECORD_PREFIX, BuildRecords, record_name
from reconciler.providers.azure.registry_images import RegistryImages
from reconciler.providers.azure.retry import Retrier
from reconciler.providers.azure.workspace import RegistryLookup, WorkspaceAddress, identity_fingerprint
from reconciler.providers.base import BuiltImage, Progress

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

T = TypeVar("T")

CLOUD = "AzureCloud"
AZUREML_RETRIES_VARIABLE = "AZUREML_DEFAULT_RETRIES"
BUILD_LOG_TAIL = 60  # lines of a failed build's log quoted in the error
RUNNING = frozenset({"NotStarted", "Running"})
def _scope(resource: str) -> str:
    """An AAD v1 resource (what azureml asks for) as a v2 scope: ``https://management.core.windows.net/``
    becomes ``https://management.core.windows.net/.default``."""
    return resource.rstrip("/") + "/.default"


def _one_subscription_auth(token_for: Callable[[str], str], subscription_id: str) -> Any:
    """azureml's ``TokenAuthentication`` without its subscription check: one ARM request less per run.

    Before every ARM client it builds (``AbstractAuthentication._get_service_client``: opening the workspace,
    and again for ``listKeys``), azureml lists every subscription the identity can see (``GET /subscriptions``,
    paged) only to raise its own "subscription not found" error when the workspace's is not among them. Every
    azureml authentication class does it (``TokenAuthentication``, ``ServicePrincipalAuthentication``,
    ``MsiAuthentication``, ...), and no setting turns it off. ``_get_all_subscription_ids`` is the abstract
    method of ``AbstractAuthentication`` that each of them implements for that check; this one answers with
    the workspace's own subscription, with no request. Nothing is lost: the ``GET {workspace}`` that follows is
    refused by ARM itself (403 ``AuthorizationFailed``, 404 ``SubscriptionNotFound`` / ``ResourceNotFound``)
    when the identity cannot reach that subscription, and the provider reports ARM's answer. SDK v2
    (``MLClient``) makes no such check either."""
    from azureml.core.authentication import TokenAuthentication, _SubscriptionInfo

    class OneSubscriptionAuthentication(TokenAuthentication):  # type: ignore[misc]
        def _get_all_subscription_ids(self) -> tuple[list[Any], str]:
            return [_SubscriptionInfo(subscription_id, subscription_id)], ""

    return OneSubscriptionAuthentication(token_for, cloud=CLOUD)


# azureml's own request repeats off, before anything imports azureml: this module is its only importer, and
# is itself imported only when the Azure provider first needs Azure ML. A value the user set is kept.
os.environ.setdefault(AZUREML_RETRIES_VARIABLE, "0")


class WorkspaceConnection(WorkspaceAddress):
    """One Azure ML workspace, opened on first use and shared by the model registry and the image builder.

    Opening it costs an AAD token and ``GET {workspace}`` (no ``GET /subscriptions``: see
    ``_one_subscription_auth``); the first model call adds one unauthenticated discovery ``GET``.

    Every SDK call goes through ``call``, that is through the provider's ``Retrier`` (shared, so that its
    ``CallStats`` count these calls too). azureml-core keeps retries of its own (msrest's, and the artifact
    client's upload retries) that no supported setting turns off; only the azure-containerregistry client
    is built with its retries off.
    """

    def __init__(self, subscription_id: str, resource_group: str, workspace_name: str,
                 credential: TokenCredential, retrier: Retrier | None = None,
                 registry_lookup: RegistryLookup | None = None) -> None:
        super().__init__(subscription_id, resource_group, workspace_name, credential, retrier, registry_lookup)
        # azureml calls run one at a time: ``call`` swaps the process-wide ``sys.stdout``, and the snapshot lists
        # models in a thread of its own while the rest of it goes on.
        self._lock = threading.RLock()

    def call(self, fn: Callable[[], T], *, what: str, write: bool, repeatable: bool = False,
             recover: Callable[[], T | None] | None = None) -> T:
        """One SDK call through the retrier, its prints kept off the CLI's stdout."""

        def quietly() -> T:
            with self._lock, contextlib.redirect_stdout(io.StringIO()):
                return fn()

        return self.retrier.call(quietly, what=what, write=write, repeatable=repeatable, recover=recover)

    @property
    def workspace(self) -> Any:
        """The workspace, opened once (by whichever thread asks first). Once open it is handed out without the
        lock: the snapshot lists images (which need the workspace's registry) while the model listing, which
        holds the lock for its whole call, runs in its own thread."""
        opened = self.__dict__.get("_workspace")
        if opened is not None:
            return opened
        with self._lock:
            if "_workspace" not in self.__dict__:
                self.__dict__["_workspace"] = self._open()
            return self.__dict__["_workspace"]

    def _open(self) -> Any:
        from azureml.core import Workspace

        # azureml asks for tokens by AAD v1 resource (ARM, or Azure ML's own audience); any azure-identity
        # credential answers by v2 scope and caches the tokens.
        auth = _one_subscription_auth(lambda resource: self.credential.get_token(_scope(resource)).token,
                                      self.subscription_id)
        return self.call(lambda: Workspace(self.subscription_id, self.resource_group, self.workspace_name, auth=auth),
                         what=f"workspace {self.workspace_name}", write=False)

    @cached_property
    def registry_id(self) -> str:
        """The ARM id of the workspace's container registry ('' when none is attached). Taken from the
        workspace as ``Workspace()`` read it (azureml keeps that answer in ``_workspace_autorest_object``):
        ``get_details()`` would read it again."""
        workspace = self.workspace
        read = getattr(workspace, "_workspace_autorest_object", None)
        registry = getattr(read, "container_registry", None) if read is not None else None
        if registry is None:  # another azureml version, or a workspace object built without the read
            details = self.call(workspace.get_details, what=f"workspace {self.workspace_name}", write=False)
            registry = details.get("containerRegistry")
        return str(registry or "")



# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


def _mutable_tags(tags: dict[str, str]) -> dict[str, str]:
    """What goes into a model's (mutable, filterable) tags: all but the fingerprint, which goes into its
    properties instead: it is a fact about the version's files, and properties cannot be edited."""
    return {k: v for k, v in tags.items() if k != ownership.FINGERPRINT}


def _has(model: Any, fingerprint: str, properties: dict[str, str]) -> bool:
    """Whether a registered version has these files and (at least) these property values."""
    registered = dict(model.properties or {})
    return registered.get(ownership.FINGERPRINT) == fingerprint and all(
        registered.get(k) == v for k, v in properties.items())


def _to_version(model: Any, *, referenced: bool = False) -> ModelVersion:
    """``referenced``: a version a spec names as its source, which has a fingerprint even when no reconciler
    registered it."""
    tags, properties = dict(model.tags or {}), dict(model.properties or {})
    fingerprint = properties.get(ownership.FINGERPRINT) or (
        identity_fingerprint(model.name, int(model.version)) if referenced else None)
    return ModelVersion(
        name=model.name, version=int(model.version), fingerprint=fingerprint,
        description=model.description or "", tags=ownership.user_tags(tags),
        properties=ownership.user_tags(properties), owner=ownership.owner_of(tags),
    )


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Run with ``path`` as the working directory, restored afterwards.

    azureml-core 1.61 added a path-traversal guard to ``Model.register``: a ``model_path`` outside the
    working directory raises ``PermissionError``. Specs point anywhere in the repository, so registering
    runs from the model's parent folder with the model's own name as the path; the uploaded artifact names
    are relative to that parent either way. The working directory is process-wide: this is not
    thread-safe, which is fine because the engine applies one change at a time.
    """
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _get_model(connection: WorkspaceConnection, name: str, version: int) -> Any | None:
    """One version as an SDK ``Model`` (``GET {mms}/models/{name}:{version}``); None when it is gone."""
    from azureml.core.model import Model

    def get() -> Any | None:
        try:
            return Model(connection.workspace, id=f"{name}:{version}")
        except Exception as exc:
            if errors.describe(exc).status == 404:
                return None
            raise

    return connection.call(get, what=f"model/{name}:{version}", write=False)


def _clear_description(model: Any) -> None:
    """Empty a model's description. ``Model.update`` drops a falsy description (``if description:``), so the
    same JSON patch it would send goes through the SDK's own models client (``PATCH {mms}/models/{id}``)."""
    from azureml._restclient.models_client import ModelsClient

    ModelsClient(model.workspace.service_context).patch(
        model.id, body=[{"op": "replace", "path": "/description", "value": ""}])


class AzureMLModelRegistry:
    """``ml_api.ModelRegistry`` on azureml-core.

    REST calls: ``list_owned`` one ``GET {mms}/models?tags=...`` (+ ``$skipToken`` pages of 255);
    ``register`` a filtered ``GET`` of the name's versions, artifact batch ``POST``, blob ``PUT`` + ``HEAD``
    per file, ``POST assets``, ``POST models``, the filtered ``GET`` again (what the register created);
    ``update`` ``GET`` the version, one ``PATCH`` (tags and description), one more to add properties or to
    clear the description; ``delete_owned`` one filtered ``GET`` and one ``DELETE`` per owned version.
    """

    def __init__(self, connection: WorkspaceConnection, environment: str) -> None:
        self._connection = connection
        self._call = connection.call
        self._environment = environment

    def _list(self, name: str | None = None) -> list[Any]:
        from azureml.core.model import Model

        wanted = [[ownership.MANAGED_BY, ownership.MANAGED_BY_VALUE], [ownership.ENVIRONMENT, self._environment]]
        # expand=False: otherwise models that name a run or datasets cost a run-history call each.
        models = self._call(lambda: Model.list(self._connection.workspace, name=name, tags=wanted, expand=False),
                            what=f"model/{name}" if name else "models", write=False)
        return [m for m in models if ownership.owner_of(dict(m.tags or {})) == self._environment]

    def list_owned(self, names: Collection[str] = ()) -> list[ModelVersion]:
        """``names`` are not needed: the filter is on the ownership tags, across names. The same query as
        ``Model.list`` (``GET {mms}/models?tags=...``, pages of 255; its documented maximum), through the SDK's
        own ``ModelsClient``, which ``Model.list`` calls too: its answers are read as they come, without a
        ``Model`` built for each. Building one costs about 2 ms of CPU (a workspace client and a URL each):
        a second per plan for 500 versions."""
        from azureml._restclient.models_client import ModelsClient

        workspace = self._connection.workspace
        tags = ",".join(f"{key}={value}" for key, value in (
            (ownership.MANAGED_BY, ownership.MANAGED_BY_VALUE), (ownership.ENVIRONMENT, self._environment)))
        found = self._call(lambda: list(ModelsClient(workspace.service_context).query(
            tags=tags, latest_version_only=False, count=255)), what="models", write=False)
        return [_to_version(SimpleNamespace(name=m.name, version=m.version, description=m.description,
                                            tags=m.kv_tags, properties=m.properties))
                for m in found if ownership.owner_of(dict(m.kv_tags or {})) == self._environment]

    def version(self, name: str, version: int) -> ModelVersion | None:
        model = _get_model(self._connection, name, version)
        return _to_version(model) if model is not None else None

    def referenced(self, sources: list[RegisteredSource]) -> list[ModelVersion]:
        """The versions the specs name as their source (``spec.source.registered``), whoever owns them: one
        ``GET {mms}/models/{name}:{version}`` each (a version that does not exist is left out)."""
        found = []
        for source in sources:
            model = _get_model(self._connection, source.name, source.version)
            if model is not None:
                found.append(_to_version(model, referenced=True))
        return found

    def newest(self, name: str, fingerprint: str) -> ModelVersion | None:
        matching = [_to_version(m) for m in self._list(name) if _has(m, fingerprint, {})]
        return max(matching, key=lambda m: m.version, default=None)

    def register(self, spec: ModelSpec, fingerprint: str, tags: dict[str, str], progress: Progress) -> None:
        if spec.uri is None:
            assert spec.path is not None
            self._register(spec, spec.path, fingerprint, tags, progress)
            return
        # A model from a blob: downloaded once, checked, and that very file uploaded (see ``blobs``).
        with downloaded_model(spec, self._connection.credential, self._connection.retrier, progress) as path:
            self._register(spec, path, fingerprint, tags, progress)

    def _register(self, spec: ModelSpec, model_path: Path, fingerprint: str, tags: dict[str, str],
                  progress: Progress) -> None:
        from azureml.core.model import Model

        progress.step(f"registering model {spec.name}")

        def register() -> Any:
            return Model.register(
                self._connection.workspace, model_path=model_path.name, model_name=spec.name,
                tags=_mutable_tags(tags), properties={**spec.properties, ownership.FINGERPRINT: fingerprint},
                description=spec.description or None,
            )

        known = {int(m.version) for m in self._list(spec.name)}

        def registered() -> Any | None:
            """What this register created: the owned versions of the name that were not there before and have
            this fingerprint and the declared properties. More than one means the request was sent twice
            (the SDK's transport repeats a POST whose answer was lost): the lowest is kept, the twins, with
            the same files and seconds old, are deleted. None when nothing was registered."""
            new = sorted((m for m in self._list(spec.name) if int(m.version) not in known
                          and _has(m, fingerprint, spec.properties)), key=lambda m: int(m.version))
            for twin in new[1:]:
                self._delete(twin, f"model/{spec.name}:{twin.version}")
            return new[0] if new else None

        with _working_directory(model_path.parent):
            self._call(register, what=f"model/{spec.name}", write=True, recover=registered)
        if registered() is None:
            raise PermanentProviderError("Azure ML answered the registration, but no new version with these files "
                                         "is listed; run `reconciler plan` again", resource=f"model/{spec.name}")

    def _delete(self, model: Any, what: str) -> None:
        def delete() -> None:
            try:
                model.delete()
            except Exception as exc:
                if errors.describe(exc).status != 404:  # gone already: a repeat after a lost answer
                    raise

        self._call(delete, what=what, write=True, repeatable=True)

    def update(self, version: ModelVersion, description: str, tags: dict[str, str],
               added_properties: dict[str, str]) -> None:
        what = f"model/{version.name}:{version.version}"
        model = _get_model(self._connection, version.name, version.version)
        if model is None:
            raise PermanentProviderError("this version no longer exists; run `reconciler plan` again", resource=what)
        mutable = _mutable_tags(tags)
        # Each patch sets values (tags and description replaced, properties added with their values): sending
        # one again after a lost answer changes nothing.
        self._call(lambda: model.update(tags=mutable, description=description or None), what=what, write=True,
                   repeatable=True)
        if not description and version.description:
            self._call(lambda: _clear_description(model), what=what, write=True, repeatable=True)
        if added_properties:
            self._call(lambda: model.add_properties(added_properties), what=what, write=True, repeatable=True)

    def delete_owned(self, name: str) -> None:
        for model in self._list(name):
            self._delete(model, f"model/{name}:{model.version}")


# --------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------


class AzureMLImageBuilder(RegistryImages):
    """``ml_api.ImageBuilder``: ``Model.package`` builds; the registry's tags tell what was built
    (``registry_images.RegistryImages``: listing, look-up and delete, shared with the ACR Tasks builder).

    REST calls: ``build`` one ``GET`` per model, two
    uploads (artifact batch ``POST``, blob ``PUT`` + ``HEAD``) for the generated driver and the entry script
    or source folder, ``POST packages``, then ``GET operations/{id}`` per poll; before all of it, the record of its
    inputs (``build_record``, kept by ``ArtifactRecords``).
    """

    def __init__(self, connection: WorkspaceConnection, environment: str, *, poll_interval: float = 5.0,
                 timeout: float = 3600.0, lost_start_wait: float = 900.0) -> None:
        super().__init__(connection, environment)
        self._connection = connection
        self._call = connection.call
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._lost_start_wait = lost_start_wait
        self._records = BuildRecords(ArtifactRecords(connection))

    def build(self, image: DesiredImage, models: list[ModelVersion], tags: dict[str, str],
              progress: Progress) -> None:
        """Registry tags carry no labels (``tags`` are unused): images are owned by naming convention."""
        what = f"image/{image.spec.name}:{image.label}"
        progress.step(f"building image {image.spec.name}:{image.label}")
        self._records.record(image, models, what)
        package = self._submit(image, models, what)
        if isinstance(package, ImageVersion):  # the start's answer was lost, and that build pushed the image
            return
        started, polls = time.monotonic(), 0
        while package.state in RUNNING:
            if time.monotonic() - started > self._timeout:
                raise TransientProviderError(
                    f"the build is still {package.state} after {self._timeout:.0f} s; run `reconciler plan` "
                    "again later: a finished build shows up as unchanged", resource=what)
            time.sleep(self._poll_interval)
            self._call(package.update_creation_state, what=what, write=False)
            polls += 1
            progress.advance(polls, None)
        if package.state != "Succeeded":
            raise PermanentProviderError(self._failure(package), resource=what)

    def _submit(self, image: DesiredImage, models: list[ModelVersion], what: str) -> Any:
        """Start the build. ``ModelPackage`` reads the operation once on construction, so a build the
        service finishes at once needs no poll (``wait_for_creation`` would sleep 5 s per poll, with no
        progress hook and no time limit: ``build`` polls itself)."""
        from azureml.core.environment import Environment
        from azureml.core.model import InferenceConfig, Model

        given = sorted(str(m.fingerprint) for m in models)  # registered sources may have another name than the spec
        if given != sorted(image.model_fingerprints.values()):  # the label promises exactly these model files
            raise ValueError(f"{what}: built from {given}, but its label stands for {image.model_fingerprints}")
        workspace = self._connection.workspace
        resolved = []
        for m in models:
            model = _get_model(self._connection, m.name, m.version)
            if model is None:
                raise PermanentProviderError("this version no longer exists; run `reconciler plan` again",
                                             resource=f"model/{m.name}:{m.version}")
            resolved.append(model)
        spec = image.spec

        def submit() -> Any:
            # Local checks first (conda file parsed, entry script compiled): their errors surface here too.
            environment = Environment.from_conda_specification(name=spec.name, file_path=str(spec.conda_file))
            if spec.source_directory is None:
                config = InferenceConfig(entry_script=str(spec.entry_script), environment=environment)
            else:
                config = InferenceConfig(entry_script=os.path.relpath(spec.entry_script, spec.source_directory),
                                         source_directory=str(spec.source_directory), environment=environment)
            return Model.package(workspace, resolved, config, image_name=spec.name, image_label=image.label)

        return self._call(submit, what=what, write=True, recover=lambda: self._started_build(image))

    def built_files(self, name: str, label: str, destination: Path) -> BuiltImage:
        """``ml_api.ImageBuilder``: what ``build`` recorded (``build_record``), models by ``Model.download``."""
        return self._records.built_files(name, label, destination)

    def _started_build(self, image: DesiredImage) -> ImageVersion | None:
        """After a build start whose answer was lost: the image that build pushes, or None when no build of
        this label shows up. SDK v1 cannot list package operations, so a started build is found by its
        result: the registry tag ``<name>:<label>`` is looked up every poll interval for up to
        ``lost_start_wait`` seconds (the time a build takes; both scaled by ``RECONCILER_RETRY_SCALE``)
        before another build is started. Either way the
        registry ends with one image for the label: a label is a digest of the build's inputs."""
        scale = self._connection.retrier.policy.scale  # a wait like the retry waits: scaled the same way
        name, deadline = image.spec.name, time.monotonic() + self._lost_start_wait * scale
        while True:
            found = self.get(name, image.label)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                return None
            time.sleep(self._poll_interval * scale)

    def _failure(self, package: Any) -> str:
        error = package.error or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        text = errors.scrub(f"the image build ended {package.state}: {message or 'no reason given'}")
        try:
            log = self._call(package.get_logs, what="build log", write=False)
        except ProviderError as exc:
            return f"{text}\n(the build log could not be read: {exc})"
        lines = errors.scrub(log).splitlines()
        omitted = f" (last {BUILD_LOG_TAIL} of {len(lines)} lines)" if len(lines) > BUILD_LOG_TAIL else ""
        return f"{text}\nbuild log{omitted}:\n" + "\n".join(lines[-BUILD_LOG_TAIL:])


class ArtifactRecords:
    """``build_record.RecordStore`` on SDK v1: build records as artifacts of the workspace (the artifact service
    ``Model.register`` uploads to: origin ``LocalUpload``, container ``build_record.record_name``), models fetched with
    ``Model.download``.

    REST calls: ``recorded`` one ``GET /artifact/v2.0{ws}/artifacts/prefix/contentinfo/{origin}/{container}/image/``;
    ``upload_record`` as ``Model.register`` uploads: an artifact batch ``POST`` and a blob ``PUT`` + ``HEAD`` per file;
    ``read_recorded`` one blob ``GET``; ``download_model`` the model's ``GET``, its asset, the asset's prefix listing
    and a blob ``GET`` per file."""

    def __init__(self, connection: WorkspaceConnection) -> None:
        self._connection = connection
        self._call = connection.call

    @cached_property
    def _client(self) -> Any:
        from azureml._restclient.artifacts_client import ArtifactsClient

        return ArtifactsClient(self._connection.workspace.service_context)

    def recorded(self, name: str, label: str) -> dict[str, str]:
        client = self._client
        prefix = f"{RECORD_ORIGIN}/{record_name(name, label)}/{RECORD_PREFIX}/"

        def listing() -> dict[str, str]:
            try:
                return dict(client.get_files_by_artifact_prefix_id(prefix))
            except Exception as exc:
                if errors.describe(exc).status == 404:
                    return {}
                raise

        return self._call(listing, what=f"image/{name}:{label} (recorded inputs)", write=False)

    def upload_record(self, name: str, label: str, files: dict[str, Path], what: str) -> None:
        client = self._client
        self._call(lambda: list(client.upload_files([str(path) for path in files.values()], RECORD_ORIGIN,
                                                    record_name(name, label), names=list(files))),
                   what=what, write=True, repeatable=True)

    def read_recorded(self, path: str, handle: str, target: Path) -> None:
        from azureml._file_utils import download_file

        session = self._client.session
        self._call(functools.partial(download_file, handle, str(target), session=session, fail_on_not_found=True),
                   what=f"{path} (recorded inputs)", write=False)

    def download_model(self, name: str, version: int, destination: Path) -> None:
        model = _get_model(self._connection, name, version)
        if model is None:
            raise PermanentProviderError("the deployed image packages this version, which no longer exists",
                                         resource=f"model/{name}:{version}")
        self._call(lambda: model.download(target_dir=str(destination), exist_ok=True), what=f"model/{name}:{version}",
                   write=False)
