"""``ml_api.ImageBuilder`` on ACR Tasks: the image's Docker build context, built in the workspace's registry.

``environment.yaml`` picks it with ``azure.images.builder: acr-tasks`` (the default, ``aml``, is Azure ML's
``Model.package``: ``ml.AzureMLImageBuilder``). The build context is the one the local backend writes under
``images/<name>/<label>/context/`` (``providers.layout.write_context``: the same function, the same bytes),
sent as one deterministic archive (``layout.context_archive``). Images land where ``Model.package`` puts
them, ``<login server>/<name>:<label>``, and are listed from the registry's tags (``registry_images``): the
label, and so the plan, does not depend on the builder, and switching builders rebuilds nothing.

One build, as REST calls (api-version ``API_VERSION``, the one ``az acr build`` uses; the SDK's 2025-04-01
default has no ``scheduleRun``):

1. ``POST {registry}/listBuildSourceUploadUrl`` (``registries.get_build_source_upload_url``): a SAS URL of
   a blob and the relative path that names it;
2. ``PUT`` the archive to that URL (``x-ms-blob-type: BlockBlob``);
3. ``POST {registry}/scheduleRun`` (``registries.begin_schedule_run``) with a ``DockerBuildRequest``: the
   image ``<name>:<label>``, push on, ``linux/amd64``, the uploaded archive as ``sourceLocation``;
4. ``GET {registry}/runs/{runId}`` (``runs.get``) every ``poll_interval`` until the run ends;
5. a failed run only: ``POST .../runs/{runId}/listLogSasUrl`` (``runs.get_log_sas_url``) and ``GET`` of the
   log, quoted trimmed to its last meaningful lines, secrets scrubbed.

Before step 1 the build records its inputs (``build_record.BuildRecords``, the same record as the ``aml``
builder's: the application, the conda file and ``image.json``), in the store of the workspace's SDK: artifacts on
SDK v1, the default datastore's blobs on SDK v2. A plan's behaviour diff reads them back for the deployed side.

The model files come from the Model specs' paths on this machine, checked against the fingerprint of the
registered version the image packages (the fingerprint is the digest of exactly the registered files), so the
context holds the registered bytes without downloading them from Azure ML.

Writes whose answer is lost: the upload is a blob ``PUT`` (the same bytes again); a ``scheduleRun`` sent twice
builds the same context into the same tag twice, and the registry ends with one image for the label (a label
is a digest of the build's inputs). Both are therefore ``repeatable``. Builds of one apply run concurrently, at
most ``build_slots`` at a time (the engine's ``ConcurrentBuilds``).
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.errors import PermanentProviderError, ProviderError, TransientProviderError
from reconciler.model.plan import DesiredImage
from reconciler.model.state import ModelVersion
from reconciler.providers import layout
from reconciler.providers.azure import errors
from reconciler.providers.azure.auth import registry_client
from reconciler.providers.azure.build_record import BuildRecords
from reconciler.providers.azure.registry import REGISTRY_ID
from reconciler.providers.azure.registry_images import RegistryImages, RegistryTarget
from reconciler.providers.base import BuiltImage, Progress
from reconciler.spec.fingerprints import HashCache, tree_digest

API_VERSION = "2019-06-01-preview"
BUILDER = "acr-tasks"
PLATFORM = ("Linux", "amd64")
RUNNING = frozenset({"Queued", "Started", "Running"})
LOG_TAIL = 40  # meaningful lines of a failed build's log quoted in the error
HTTP_TIMEOUT = 300.0  # seconds for the archive upload and the log download
BUILD_SLOTS = 4  # builds in flight at once: ACR Tasks queues more runs than that per registry anyway
_SDK_IMPORT = threading.Lock()


def _import_sdk_version() -> None:
    """Import the SDK's 2019-06-01-preview package once, in one thread. Builds run up to ``BUILD_SLOTS`` at
    once, and each first touched that package from its own thread (its models here, its operations through
    ``client.registries``); the package imports itself circularly (its ``__init__`` imports the client, which
    imports the operations), and CPython hands a thread a partially initialized module when another thread is
    importing it: ``ImportError: cannot import name 'AgentPoolsOperations' from partially initialized module``
    (seen in ``benchmarks/azure_calls.py --sdk v2``'s first apply)."""
    with _SDK_IMPORT:
        import azure.mgmt.containerregistry.v2019_06_01_preview  # noqa: F401

# Lines of a Docker build log that say nothing about why it failed: progress, layer ids, blank lines.
_NOISE = re.compile(
    r"^\s*$|^\s*--->|^Removing intermediate container|^Sending build context|"
    r"^[0-9a-f]{6,64}: (Pulling fs layer|Waiting|Verifying Checksum|Download complete|Pull complete|"
    r"Already exists|Downloading|Extracting)|^\S+: Pulling from |^Digest: sha256:|^Status: Downloaded")


def _copy_file(source: str, destination: Path) -> None:
    """``layout.write_context``'s ``copy``: a model file's key is its path on this machine."""
    shutil.copyfile(source, destination)


def meaningful_tail(log: str, limit: int = LOG_TAIL) -> tuple[list[str], int]:
    """The last ``limit`` meaningful lines of a build log (no blank lines, pull progress, layer ids), secrets
    scrubbed; and how many meaningful lines there were."""
    lines = [line.rstrip() for line in errors.scrub(log).splitlines() if not _NOISE.search(line)]
    return lines[-limit:], len(lines)


class AcrTasksImageBuilder(RegistryImages):
    """Builds with ACR Tasks in the registry of ``target``; lists, looks up and deletes with ``RegistryImages``.

    ``model_files(name)`` is the path of the Model spec ``name`` on this machine (None when there is none);
    ``records`` keeps what each build was given (``build_record``), in the workspace SDK's store."""

    def __init__(self, target: RegistryTarget, environment: str, model_files: Callable[[str], Path | None],
                 records: BuildRecords, *, poll_interval: float = 3.0, timeout: float = 3600.0,
                 slots: int = BUILD_SLOTS) -> None:
        super().__init__(target, environment)
        self._model_files = model_files
        self._records = records
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._slots = slots

    @property
    def build_slots(self) -> int:
        """``base.ConcurrentBuilds``: builds the engine may run at once."""
        return self._slots

    def built_files(self, name: str, label: str, destination: Path) -> BuiltImage:
        """``ml_api.ImageBuilder``: what ``build`` recorded before the run (``build_record``)."""
        return self._records.built_files(name, label, destination)

    def build(self, image: DesiredImage, models: list[ModelVersion], tags: dict[str, str],
              progress: Progress) -> None:
        """Registry tags carry no labels (``tags`` are unused): images are owned by naming convention."""
        name, label = image.spec.name, image.label
        what = f"image/{name}:{label}"
        given = {m.name: m.fingerprint for m in models}
        if given != image.model_fingerprints:  # the label promises exactly these model files
            raise ValueError(f"{what}: built from {given}, but its label stands for {image.model_fingerprints}")
        progress.step(f"building image {name}:{label} with ACR Tasks")
        _import_sdk_version()
        packaged = [self._packaged(model) for model in models]
        self._records.record(image, models, what)  # before the run is scheduled: a label stands for its inputs
        with tempfile.TemporaryDirectory(prefix="reconciler-context-") as folder:
            context = Path(folder) / "context"
            context.mkdir()
            layout.write_context(context, image.spec, f"{name}:{label}", packaged, _copy_file)
            archive = layout.context_archive(context)
        match = REGISTRY_ID.search(self._target.registry_id)
        if match is None:
            raise PermanentProviderError("the workspace has no container registry attached; attach one (az ml "
                                         "workspace update --container-registry <acr id>) so images can be built",
                                         resource=what)
        client = registry_client(self._target.credential, match.group("sub"), self._target.retrier.stats,
                                 api_version=API_VERSION)
        group, registry = match.group("rg"), match.group("name")
        try:
            run = self._run(client, group, registry, name, label, archive, progress)
            if run.status != "Succeeded":
                raise PermanentProviderError(self._failure(client, group, registry, run), resource=what)
        finally:
            client.close()

    def _packaged(self, model: ModelVersion) -> layout.PackagedModel:
        """The version's files, from its Model spec's path, if they are still the registered ones."""
        resource = f"model/{model.name}:{model.version}"
        path = self._model_files(model.name)
        if path is None or not path.exists():
            raise PermanentProviderError("no Model spec of this name with files on this machine; ACR Tasks builds "
                                         "the image from the spec's files (a registered version named by "
                                         "spec.source.registered needs the aml builder for now): run "
                                         "`reconciler plan` again", resource=resource)
        if tree_digest(path, HashCache()) != model.fingerprint:
            raise PermanentProviderError("the model files changed since this version was registered; run "
                                         "`reconciler plan` again", resource=resource)
        return layout.PackagedModel(model.name, model.version,
                                    {relative: str(file) for relative, file in layout.registered_files(path).items()})

    def _run(self, client: Any, group: str, registry: str, name: str, label: str, archive: bytes,
             progress: Progress) -> Any:
        """Upload the archive, schedule the run, poll it until it ends; the run as last read."""
        from azure.mgmt.containerregistry.v2019_06_01_preview.models import DockerBuildRequest, PlatformProperties

        retrier, what = self._target.retrier, f"image/{name}:{label}"
        source = retrier.call(lambda: client.registries.get_build_source_upload_url(group, registry),
                              what=f"{what} (source upload URL)", write=False)
        errors.register_secret(source.upload_url.partition("?")[2] or None)  # the SAS query: never in a message
        retrier.call(lambda: self._put_blob(source.upload_url, archive), what=f"{what} (context upload)",
                     write=True, repeatable=True)
        request = DockerBuildRequest(
            image_names=[f"{name}:{label}"], is_push_enabled=True, no_cache=False,
            docker_file_path=layout.DOCKERFILE, source_location=source.relative_path,
            platform=PlatformProperties(os=PLATFORM[0], architecture=PLATFORM[1]),
            timeout=max(300, min(28800, int(self._timeout))))  # the definition's bounds for a run's timeout
        scale = retrier.policy.scale
        run = retrier.call(lambda: client.registries.begin_schedule_run(
            group, registry, request, polling_interval=self._poll_interval * scale).result(),
            what=f"{what} (schedule run)", write=True, repeatable=True)
        started, polls = time.monotonic(), 0
        while run.status in RUNNING:
            if time.monotonic() - started > self._timeout:
                raise TransientProviderError(
                    f"the ACR Tasks run {run.run_id} is still {run.status} after {self._timeout:.0f} s; run "
                    "`reconciler plan` again later: a finished build shows up as unchanged", resource=what)
            time.sleep(self._poll_interval * scale)
            run = retrier.call(functools.partial(client.runs.get, group, registry, run.run_id),
                               what=f"{what} (run {run.run_id})", write=False)
            polls += 1
            progress.advance(polls, None)
        return run

    @staticmethod
    def _put_blob(url: str, data: bytes) -> None:
        import requests

        response = requests.put(url, data=data, timeout=HTTP_TIMEOUT, headers={
            "x-ms-blob-type": "BlockBlob", "Content-Type": "application/gzip"})
        response.raise_for_status()

    @staticmethod
    def _get_text(url: str) -> str:
        import requests

        response = requests.get(url, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return response.content.decode("utf-8", errors="replace")

    def _failure(self, client: Any, group: str, registry: str, run: Any) -> str:
        reason = errors.scrub(run.run_error_message or "no reason given")
        text = f"the ACR Tasks run {run.run_id} ended {run.status}: {reason}"
        retrier = self._target.retrier
        try:
            link = retrier.call(lambda: client.runs.get_log_sas_url(group, registry, run.run_id).log_link,
                                what=f"run {run.run_id} (log link)", write=False)
            errors.register_secret(str(link).partition("?")[2] or None)
            log = retrier.call(lambda: self._get_text(str(link)), what=f"run {run.run_id} (log)", write=False)
        except ProviderError as exc:
            return f"{text}\n(the build log could not be read: {exc})"
        lines, total = meaningful_tail(log)
        omitted = f" (last {len(lines)} of {total} lines)" if total > len(lines) else ""
        return f"{text}\nbuild log{omitted}:\n" + "\n".join(lines)
