"""ACR Tasks: quick Docker builds in a registry (what ``az acr build`` and the product's ``acr-tasks`` builder do).

The calls, as published in azure-rest-api-specs ``containerregistry_build.json`` (api-version 2019-06-01-preview,
vendored under ``specs/``; any api-version is answered the same way):

* ``POST {registry}/listBuildSourceUploadUrl`` (Registries_GetBuildSourceUploadUrl): ``uploadUrl``, a SAS URL of
  a blob in a storage account of the service, and ``relativePath``, the name a run request gives that blob as
  its ``sourceLocation`` (the example ``RegistriesGetBuildSourceUploadUrl.json``: the URL's blob path is the
  relative path, ``source/<yyyymmddHHMM>/<uuid>.tar.gz``). The blob is served by ``aml.py``'s blob routes
  (``PUT`` with ``x-ms-blob-type: BlockBlob``, ``GET``), checked against the SAS signature.
* ``POST {registry}/scheduleRun`` (Registries_ScheduleRun, ``x-ms-long-running-operation``: 200 with the ``Run``,
  or 202): by default 200 with the run ``Queued``: scheduling is done once the run is queued; the run is
  followed with ``runs.get``. With ``set_schedule_answer(state, "accepted")`` it answers 202 with a ``Location``
  whose ``GET`` gives the same ``Run`` (ARM's asynchronous POST; the 202 declares no header).
* ``GET {registry}/runs/{runId}`` (Runs_Get) and ``POST {registry}/runs/{runId}/listLogSasUrl``
  (Runs_GetLogSasUrl: ``logLink``, a SAS URL of the run's log blob, ``logs/<runId>/rawtext.log`` as in
  ``RunsGetLogSasUrl.json``).

The build itself is judged by rules when the run is scheduled, from the uploaded archive, the way a Docker build
would fail: the archive must be a gzip tar; the Dockerfile at ``dockerFilePath`` must exist; its first instruction
must be ``FROM``; every ``COPY``/``ADD`` source must exist in the context. A passing build pushes every
``imageNames`` entry into the registry (``acr.push_image``: tags and manifests as every other push) when
``isPushEnabled``; the push happens when the run ends.

Test hooks: ``fail_next_run(state, message, log=...)`` (the next run fails with that error and log lines),
``set_run_duration(state, seconds)`` (a run stays ``Running`` that long after it is scheduled: slow builds),
``set_schedule_answer``, ``runs_of(state)`` (every run, with its request and the uploaded context's files),
``uploaded_archive(state, run)``. Throttling is the server's faults (``emu.faults.throttle(path="scheduleRun")``:
429 with ``Retry-After`` in ARM's error shape).
"""

from __future__ import annotations

import gzip
import io
import re
import shlex
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import acr, aml
from .arm import now_iso
from .framework import EmulatorState, Request, Response, Route, error

ARM_HOST = acr.ARM_HOST
REG = acr._REG
SOURCE_ACCOUNT = "emuacrtasks"  # the service's own storage account for uploaded sources and run logs
SOURCE_FOLDER = "source"  # sources are uploaded to <registry container>/source/<yyyymmddHHMM>/<uuid>.tar.gz
LOG_CONTAINER = "logs"


@dataclass
class RunRecord:
    state: EmulatorState = field(repr=False)
    registry: str
    run_id: str
    request: dict[str, Any]
    files: dict[str, bytes]  # the uploaded context: path -> content (empty when the archive was unreadable)
    failure: str | None  # the error a rule or fail_next_run gave; None: the build passes
    log: list[str]
    created: float = field(default_factory=time.time)
    created_iso: str = field(default_factory=now_iso)
    duration: float = 0.0
    started: bool = False  # read once: a scheduled run is Queued until then
    finished: bool = False
    output: list[dict[str, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.finished:
            return "Running" if self.started else "Queued"
        return "Failed" if self.failure else "Succeeded"


def _tasks(state: EmulatorState) -> dict[str, Any]:
    return state.service("acr_tasks")


def fail_next_run(state: EmulatorState, message: str = "failed during run, err: exit status 1",
                  log: list[str] | None = None) -> None:
    """The next scheduled run fails with ``message``; ``log`` lines are written into its log before it."""
    with state.lock:
        _tasks(state)["fail_next"] = (message, list(log or []))


def set_run_duration(state: EmulatorState, seconds: float) -> None:
    """Runs stay ``Running`` for ``seconds`` after they are scheduled (default 0: done at the first read)."""
    with state.lock:
        _tasks(state)["duration"] = seconds


def set_schedule_answer(state: EmulatorState, answer: str) -> None:
    """``"run"`` (200 with the queued run, the default) or ``"accepted"`` (202 + ``Location``)."""
    if answer not in ("run", "accepted"):
        raise ValueError(answer)
    with state.lock:
        _tasks(state)["schedule_answer"] = answer


def runs_of(state: EmulatorState) -> list[RunRecord]:
    with state.lock:
        return list(_tasks(state).get("runs", {}).values())


def _source_key(registry: str, relative_path: str) -> aml.BlobKey:
    return (SOURCE_ACCOUNT, registry.lower(), relative_path)


def uploaded_archive(state: EmulatorState, run: RunRecord) -> bytes | None:
    blob = aml.get_blob_object(state, _source_key(run.registry, str(run.request.get("sourceLocation", ""))))
    return blob.data if blob is not None else None


# --------------------------------------------------------------------------------------------------------------
# The build rules
# --------------------------------------------------------------------------------------------------------------


def _extract(archive: bytes) -> dict[str, bytes] | None:
    """path -> content of a gzip tar's regular files; None when it is not one."""
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive)), mode="r:") as tar:
            return {m.name.removeprefix("./"): tar.extractfile(m).read()  # type: ignore[union-attr]
                    for m in tar.getmembers() if m.isfile()}
    except (OSError, tarfile.TarError, EOFError):
        return None


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _judge(files: dict[str, bytes] | None, dockerfile_path: str) -> tuple[str | None, list[str]]:
    """(the failure, or None; the build's log lines) of a Docker build of ``files``."""
    if files is None:
        return "failed to download the source: the archive is not a gzip tar", []
    if dockerfile_path not in files:
        return (f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat "
                f"/workspace/{dockerfile_path}: no such file or directory"), []
    steps = _instructions(files[dockerfile_path].decode("utf-8", errors="replace"))
    log = [f"Sending build context to Docker daemon  {sum(map(len, files.values())) / 1024:.1f}kB"]
    if not steps or steps[0][0] != "FROM":
        return "Dockerfile parse error: the first instruction must be FROM", log
    for number, (keyword, arguments) in enumerate(steps, start=1):
        log.append(f"Step {number}/{len(steps)} : {keyword} {arguments}")
        if keyword in ("COPY", "ADD"):
            sources = [s for s in shlex.split(arguments)[:-1] if not s.startswith("--")]
            for source in sources:
                prefix = source.rstrip("/")
                if prefix not in files and not any(name.startswith(prefix + "/") for name in files):
                    return (f"COPY failed: file not found in build context or excluded by .dockerignore: stat "
                            f"{source}: file does not exist"), log
        log.append(" ---> " + uuid.uuid4().hex[:12])
    return None, log


# --------------------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------------------


def _registry(request: Request, state: EmulatorState) -> acr.RegistryRecord | Response:
    return acr._registry_or_error(request, state)


def source_upload_url(request: Request, state: EmulatorState) -> Response:
    record = _registry(request, state)
    if isinstance(record, Response):
        return record
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M")
    relative = f"{SOURCE_FOLDER}/{stamp}/{uuid.uuid4()}.tar.gz"
    account, container, blob = _source_key(record.name, relative)
    return Response(200, {"uploadUrl": aml.sas_url(account, container, blob, "cw"), "relativePath": relative})


def _run_json(record: acr.RegistryRecord, run: RunRecord) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "runId": run.run_id, "status": run.status, "runType": "QuickBuild", "createTime": run.created_iso,
        "lastUpdatedTime": now_iso(), "provisioningState": "Succeeded", "isArchiveEnabled": False,
        "platform": run.request.get("platform") or {"os": "Linux"},
    }
    if run.status != "Queued":
        properties["startTime"] = run.created_iso
    if run.finished:
        properties["finishTime"] = now_iso()
        properties["outputImages"] = list(run.output)
    if run.failure:
        properties["runErrorMessage"] = run.failure
    return {"id": f"{record.arm_id}/runs/{run.run_id}", "name": run.run_id,
            "type": "Microsoft.ContainerRegistry/registries/runs", "properties": properties}


def _log_key(run: RunRecord) -> aml.BlobKey:
    return (SOURCE_ACCOUNT, LOG_CONTAINER, f"{run.run_id}/rawtext.log")


def _advance(run: RunRecord, record: acr.RegistryRecord) -> None:
    """Finish the run once its duration is over: push its images, write the end of its log."""
    if run.finished or time.time() - run.created < run.duration:
        return
    run.finished = True
    seconds = max(1, round(time.time() - run.created))
    if run.failure is None and run.request.get("isPushEnabled", True):
        for name in run.request.get("imageNames") or []:
            repository, _, tag = name.partition(":")
            pushed = acr.push_image(run.state, record.name, repository, tag or "latest")
            run.log.append(f"{datetime.now(timezone.utc):%Y/%m/%d %H:%M:%S} Successfully pushed image: "
                           f"{record.login_server}/{repository}:{tag or 'latest'}")
            run.output.append({"registry": record.login_server, "repository": repository, "tag": tag or "latest",
                               "digest": pushed.digest})
    if run.failure is None:
        run.log.append(f"Run ID: {run.run_id} was successful after {seconds}s")
    else:
        run.log.append(f"Run ID: {run.run_id} failed after {seconds}s. Error: {run.failure}")
    aml.put_blob_object(run.state, _log_key(run), ("\n".join(run.log) + "\n").encode())


def schedule_run(request: Request, state: EmulatorState) -> Response:
    record = _registry(request, state)
    if isinstance(record, Response):
        return record
    body = request.json() or {}
    if body.get("type") != "DockerBuildRequest":
        return error(400, "InvalidRequest", "Only DockerBuildRequest runs are emulated.")
    if not body.get("dockerFilePath") or not (body.get("platform") or {}).get("os"):
        return error(400, "InvalidRequest", "dockerFilePath and platform.os are required (DockerBuildRequest).")
    location = str(body.get("sourceLocation") or "")
    archive = aml.get_blob_object(state, _source_key(record.name, location))
    if archive is None:
        return error(400, "InvalidSourceLocation",
                     f"The source location '{location}' was not found: upload it to the URL of "
                     "listBuildSourceUploadUrl first.")
    files = _extract(archive.data)
    with state.lock:
        tasks = _tasks(state)
        injected = tasks.pop("fail_next", None)
        tasks["count"] = tasks.get("count", 0) + 1
        run_id = f"ca{tasks['count']}"
        duration = float(tasks.get("duration", 0.0))
    failure, steps = _judge(files, str(body["dockerFilePath"]))
    stamp = f"{datetime.now(timezone.utc):%Y/%m/%d %H:%M:%S}"
    log = [f"{stamp} Downloading source code...", f"{stamp} Finished downloading source code", *steps]
    if injected is not None and failure is None:
        failure = injected[0]
        log += injected[1]
    run = RunRecord(state, record.name, run_id, body, files or {}, failure, log, duration=duration)
    with state.lock:
        _tasks(state).setdefault("runs", {})[run_id] = run
    answer = _tasks(state).get("schedule_answer", "run")
    if answer == "accepted":
        op_url = acr._operation_url(request, record, "operationResults",
                                    acr._new_operation(state, _run_json(record, run)))
        return Response(202, None, {"Location": op_url, "Retry-After": "0"})
    return Response(200, _run_json(record, run))


def _run_or_error(request: Request, state: EmulatorState) -> tuple[acr.RegistryRecord, RunRecord] | Response:
    record = _registry(request, state)
    if isinstance(record, Response):
        return record
    with state.lock:
        run = _tasks(state).get("runs", {}).get(request.params["run"])
    if run is None or run.registry != record.name:
        return error(404, "RunNotFound", f"The run '{request.params['run']}' was not found.")
    return record, run


def get_run(request: Request, state: EmulatorState) -> Response:
    found = _run_or_error(request, state)
    if isinstance(found, Response):
        return found
    record, run = found
    with state.lock:
        run.started = True
        _advance(run, record)
    return Response(200, _run_json(record, run))


def log_sas_url(request: Request, state: EmulatorState) -> Response:
    found = _run_or_error(request, state)
    if isinstance(found, Response):
        return found
    record, run = found
    with state.lock:
        _advance(run, record)
    if aml.get_blob_object(state, _log_key(run)) is None:  # still running: the log so far
        aml.put_blob_object(state, _log_key(run), ("\n".join(run.log) + "\n").encode())
    account, container, blob = _log_key(run)
    return Response(200, {"logLink": aml.sas_url(account, container, blob, "r")})


_RUN = r"/runs/(?P<run>[^/]+)"

ROUTES: list[Route] = [
    Route("POST", ARM_HOST, REG + r"/listBuildSourceUploadUrl", source_upload_url),
    Route("POST", ARM_HOST, REG + r"/scheduleRun", schedule_run),
    Route("GET", ARM_HOST, REG + _RUN, get_run),
    Route("POST", ARM_HOST, REG + _RUN + r"/listLogSasUrl", log_sas_url),
]
