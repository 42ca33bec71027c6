"""The ACR Tasks emulator (``acr_tasks.py``) driven by the real azure-mgmt-containerregistry 14 client, api-version
2019-06-01-preview (``registries.get_build_source_upload_url``, ``begin_schedule_run``, ``runs.get``,
``runs.get_log_sas_url``), with the archive upload and the log download as plain HTTP. Imports no product code."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from . import acr, acr_tasks
from .auth import StaticTokenCredential
from .server import AzureEmulator
from .testing import running_emulator

SUB = "00000000-0000-4000-8000-0000000000a2"
RG = "rg-build"
REGISTRY = "emubuildacr"
API_VERSION = "2019-06-01-preview"
DOCKERFILE = b"FROM mcr.microsoft.com/base:1\nCOPY app/ /app/\nCMD [\"python\", \"/app/main.py\"]\n"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEmulator]:
    with running_emulator(tmp_path_factory.mktemp("home")) as running:
        yield running


@pytest.fixture
def client(emulator: AzureEmulator) -> Iterator[Any]:
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    emulator.reset()
    acr.add_registry(emulator.state, SUB, RG, REGISTRY)
    credential = StaticTokenCredential()
    with ContainerRegistryManagementClient(credential, SUB, api_version=API_VERSION, retry_total=0) as built:
        yield built
    assert emulator.errors == [] and emulator.unmatched == []


def archive(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as zipped, tarfile.open(fileobj=zipped, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def build(client: Any, files: dict[str, bytes] | bytes, image: str = "demo:1", **request: Any) -> Any:
    from azure.mgmt.containerregistry.v2019_06_01_preview.models import DockerBuildRequest, PlatformProperties

    source = client.registries.get_build_source_upload_url(RG, REGISTRY)
    data = files if isinstance(files, bytes) else archive(files)
    put = requests.put(source.upload_url, data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert put.status_code == 201
    run_request = DockerBuildRequest(image_names=[image], docker_file_path="Dockerfile", is_push_enabled=True,
                                     source_location=source.relative_path,
                                     platform=PlatformProperties(os="Linux", architecture="amd64"), **request)
    return client.registries.begin_schedule_run(RG, REGISTRY, run_request, polling_interval=0).result()


def test_a_build_is_queued_then_pushes_its_image(emulator: AzureEmulator, client: Any) -> None:
    run = build(client, {"Dockerfile": DOCKERFILE, "app/main.py": b"print(1)\n"})
    assert run.status == "Queued" and acr.list_tags(emulator.state, REGISTRY, "demo") == {}
    done = client.runs.get(RG, REGISTRY, run.run_id)
    assert done.status == "Succeeded"
    tag = acr.list_tags(emulator.state, REGISTRY, "demo")["1"]
    assert [(i.repository, i.tag, i.digest) for i in done.output_images] == [("demo", "1", tag.digest)]
    log = requests.get(client.runs.get_log_sas_url(RG, REGISTRY, run.run_id).log_link, timeout=10).text
    assert "Step 2/3 : COPY app/ /app/" in log and f"Run ID: {run.run_id} was successful" in log
    # the ACR Tasks operations were checked against containerregistry_build.json, not left unvalidated
    calls = emulator.calls(host="management.azure.com")
    assert {c.status for c in calls} == {200} and all(c.query["api-version"] == [API_VERSION] for c in calls)


@pytest.mark.parametrize(("files", "error"), [
    ({"app/main.py": b"x"}, "lstat /workspace/Dockerfile: no such file or directory"),
    ({"Dockerfile": b"RUN echo hi\n"}, "the first instruction must be FROM"),
    ({"Dockerfile": DOCKERFILE}, "COPY failed: file not found in build context or excluded by .dockerignore: "
                                 "stat app/: file does not exist"),
    (b"not a tarball", "the archive is not a gzip tar"),
])
def test_a_build_the_docker_rules_reject_fails_and_pushes_nothing(
        emulator: AzureEmulator, client: Any, files: dict[str, bytes] | bytes, error: str) -> None:
    run = build(client, files)
    done = client.runs.get(RG, REGISTRY, run.run_id)
    assert done.status == "Failed" and error in done.run_error_message
    log = requests.get(client.runs.get_log_sas_url(RG, REGISTRY, run.run_id).log_link, timeout=10).text
    assert f"Run ID: {run.run_id} failed after" in log and error in log
    assert acr.list_tags(emulator.state, REGISTRY, "demo") == {}


def test_an_injected_failure_and_a_slow_run(emulator: AzureEmulator, client: Any) -> None:
    acr_tasks.set_run_duration(emulator.state, 0.3)
    acr_tasks.fail_next_run(emulator.state, "failed during run, err: exit status 1", ["pip: no such package"])
    run = build(client, {"Dockerfile": DOCKERFILE, "app/main.py": b"x"})
    assert client.runs.get(RG, REGISTRY, run.run_id).status == "Running"
    import time

    time.sleep(0.35)
    done = client.runs.get(RG, REGISTRY, run.run_id)
    assert (done.status, done.run_error_message) == ("Failed", "failed during run, err: exit status 1")
    second = build(client, {"Dockerfile": DOCKERFILE, "app/main.py": b"x"}, image="demo:2")
    time.sleep(0.35)
    assert client.runs.get(RG, REGISTRY, second.run_id).status == "Succeeded"  # the injected failure was once


def test_schedule_run_answered_202_with_a_location(emulator: AzureEmulator, client: Any) -> None:
    acr_tasks.set_schedule_answer(emulator.state, "accepted")
    run = build(client, {"Dockerfile": DOCKERFILE, "app/main.py": b"x"})
    assert run.status == "Queued" and run.run_id == "ca1"
    (posted,) = emulator.calls("POST", path_contains="scheduleRun")
    assert posted.status == 202
    assert emulator.calls("GET", path_contains="/operationResults/")


def test_throttled_schedule_run_and_unknown_runs(emulator: AzureEmulator, client: Any, tmp_path: Path) -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    emulator.faults.throttle(retry_after=2, method="POST", path="scheduleRun$", times=1)
    with pytest.raises(HttpResponseError) as throttled:
        build(client, {"Dockerfile": DOCKERFILE, "app/main.py": b"x"})
    assert throttled.value.status_code == 429 and throttled.value.response.headers["Retry-After"] == "2"
    with pytest.raises(ResourceNotFoundError):
        client.runs.get(RG, REGISTRY, "ca404")
    from azure.mgmt.containerregistry.v2019_06_01_preview.models import DockerBuildRequest, PlatformProperties

    with pytest.raises(HttpResponseError) as missing:
        client.registries.begin_schedule_run(RG, REGISTRY, DockerBuildRequest(
            docker_file_path="Dockerfile", source_location="source/none.tar.gz",
            platform=PlatformProperties(os="Linux"))).result()
    assert missing.value.status_code == 400 and missing.value.error.code == "InvalidSourceLocation"
