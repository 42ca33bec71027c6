"""The ACR Tasks image builder (``azure.images.builder: acr-tasks``) against the emulator, with the real SDKs."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.core import planner
from reconciler.errors import PermanentProviderError, SpecError
from reconciler.model.specs import Kind
from reconciler.providers import layout
from reconciler.providers.azure.acr_tasks import API_VERSION, meaningful_tail
from reconciler.providers.azure.provider import AzureProvider
from reconciler.providers.local.provider import LocalProvider
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.azure.conftest import ACR, CLIENT_SECRET, HUB_KEY, AzureWorld
from tests.azure_emulator import acr, acr_tasks
from tests.azure_emulator.server import Call
from tests.conftest import apply_change, copy_sample

ACR_TASKS = "    images:\n      builder: acr-tasks\n  registries:\n"


def use_acr_tasks(world: AzureWorld) -> None:
    world.edit("environment.yaml", "  registries:\n", ACR_TASKS)


def files_of(archive: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as tar:
        return {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def local_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Apply the local sample (the same Model and Image specs as prod) on the local backend; its build context."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    env_dir = copy_sample(tmp_path / "local-repo", "local")
    desired = load_environment(env_dir)
    provider = LocalProvider(desired.environment)
    try:
        plan = planner.plan(desired, compute_fingerprints(desired, HashCache()), provider.read_snapshot(desired))
        for change in plan.changes:
            if change.key.kind is not Kind.DEPLOYMENT:
                apply_change(provider, change, desired.environment)
        (image,) = provider.read_snapshot(desired).images
    finally:
        provider.close()
    return tmp_path / "state" / "images" / image.name / image.label / "context"


def test_the_uploaded_context_is_the_local_backends_byte_for_byte(
        azure_world: AzureWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_acr_tasks(azure_world)
    plan = azure_world.apply()
    state = azure_world.emulator.state
    (run,) = acr_tasks.runs_of(state)
    (image,) = [c.desired for c in plan.changes if c.key.kind is Kind.IMAGE]
    assert run.request["imageNames"] == [f"iris-scorer:{image.label}"]  # type: ignore[union-attr]
    assert run.request["isPushEnabled"] is True
    assert run.request["platform"] == {"os": "Linux", "architecture": "amd64"}
    assert run.request["dockerFilePath"] == "Dockerfile"
    uploaded = acr_tasks.uploaded_archive(state, run)
    assert uploaded is not None
    context = local_context(tmp_path, monkeypatch)
    assert context.name == "context" and context.parent.name == image.label  # type: ignore[union-attr]
    local_files = {p.relative_to(context).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in context.rglob("*") if p.is_file()}
    assert files_of(uploaded) == local_files
    assert "models/iris-classifier/1/model.json" in local_files or any(f.startswith("models/") for f in local_files)
    assert hashlib.sha256(uploaded).hexdigest() == hashlib.sha256(layout.context_archive(context)).hexdigest()
    # pushed like every other build: the registry's tags list it, and the next plan has nothing to do
    assert image.label in acr.list_tags(state, ACR, "iris-scorer")  # type: ignore[union-attr]
    assert not azure_world.plan().has_changes


def test_a_build_costs_these_requests(azure_world: AzureWorld) -> None:
    use_acr_tasks(azure_world)
    azure_world.apply(kinds=frozenset({Kind.MODEL}))
    azure_world.emulator.reset_log()
    azure_world.apply(kinds=frozenset({Kind.IMAGE}))
    calls = azure_world.emulator.calls()
    record = [c for c in calls if "edge-reconciler.iris-scorer." in c.path]
    tasks = [c for c in calls if c not in record and (f"api-version={API_VERSION}" in _query(c)
                                                      or c.host.endswith(".blob.core.windows.net"))]
    assert [(c.method, c.path.rsplit("/", 1)[-1] if "/runs/" not in c.path else "runs/{id}") for c in tasks] == [
        ("POST", "listBuildSourceUploadUrl"), ("PUT", tasks[1].path.rsplit("/", 1)[-1]), ("POST", "scheduleRun"),
        ("GET", "runs/{id}")]
    # Before them, the record of its inputs (SDK v1: the artifact listing, one batch POST, PUT + HEAD per file),
    # the one the aml builder writes.
    assert calls.index(record[-1]) < calls.index(tasks[0])
    files = sorted(c.path.split("/image/", 1)[1] for c in record if c.method == "PUT")
    assert files == ["app/conda.yaml", "app/model/model.json", "app/score.py", "app/train.py",
                     "environment/conda.yaml", "image.json"]
    assert Counter(c.method for c in record) == {"GET": 1, "POST": 1, "PUT": len(files), "HEAD": len(files)}
    # A second build of the same label keeps the record: one listing, nothing written.
    state = azure_world.emulator.state
    with state.lock:  # the image deleted outside the reconciler: the next apply builds the same label again
        state.service("acr")["repositories"][ACR.lower()]["iris-scorer"].clear()
    azure_world.emulator.reset_log()
    azure_world.apply(kinds=frozenset({Kind.IMAGE}))
    assert len(acr_tasks.runs_of(state)) == 2
    again = [c for c in azure_world.emulator.calls() if "edge-reconciler.iris-scorer." in c.path]
    assert [c.method for c in again] == ["GET"]


def _query(call: Call) -> str:
    return "&".join(f"{k}={v[0]}" for k, v in call.query.items())


def test_switching_from_aml_to_acr_tasks_rebuilds_nothing(azure_world: AzureWorld) -> None:
    first = azure_world.apply()
    (built,) = [c.desired for c in first.changes if c.key.kind is Kind.IMAGE]
    before = azure_world.plan()
    use_acr_tasks(azure_world)
    provider = azure_world.provider()
    plan = azure_world.plan(provider)
    assert not plan.has_changes
    assert (plan.desired_fingerprint, plan.state_fingerprint) == (before.desired_fingerprint, before.state_fingerprint)
    assert [i.label for i in provider.read_snapshot(azure_world.desired()).images] == [built.label]  # type: ignore[union-attr]
    assert acr_tasks.runs_of(azure_world.emulator.state) == []


def test_a_failed_build_shows_the_end_of_its_log_without_secrets(azure_world: AzureWorld) -> None:
    use_acr_tasks(azure_world)
    noise = [" ---> 3f2a1b4c5d6e", "", "Removing intermediate container 1234abcd"]
    log = [f"step {n}" for n in range(60)] + noise + [
        f"pip install failed: https://u:{CLIENT_SECRET}@pypi.example/simple", f"key {HUB_KEY}",
        "ERROR: No matching distribution"]
    acr_tasks.fail_next_run(azure_world.emulator.state, "failed during run, err: exit status 1", log)
    azure_world.apply(kinds=frozenset({Kind.MODEL}))
    with pytest.raises(PermanentProviderError) as failure:
        azure_world.apply(kinds=frozenset({Kind.IMAGE}))
    message = str(failure.value)
    assert "the ACR Tasks run ca1 ended Failed: failed during run, err: exit status 1" in message
    assert "ERROR: No matching distribution" in message and "Run ID: ca1 failed after" in message
    assert CLIENT_SECRET not in message and HUB_KEY not in message
    assert "https://u:***@pypi.example/simple" in message
    assert "Removing intermediate container" not in message and " ---> " not in message
    assert "build log (last 40 of " in message and "step 5\n" not in message
    assert acr.list_tags(azure_world.emulator.state, ACR, "iris-scorer") == {}


def test_throttled_and_slow_builds_are_waited_for(azure_world: AzureWorld) -> None:
    use_acr_tasks(azure_world)
    throttle = azure_world.emulator.faults.throttle(retry_after=1, method="POST", path="scheduleRun$", times=1)
    acr_tasks.set_run_duration(azure_world.emulator.state, 0.3)
    provider = azure_world.provider()
    azure_world.apply(provider)
    assert throttle.injected == 1
    assert provider.stats.retries >= 1
    polls = [c for c in azure_world.emulator.calls("GET", "management.azure.com") if "/runs/" in c.path]
    assert len(polls) >= 2  # Running, then Succeeded
    assert len(acr.list_tags(azure_world.emulator.state, ACR, "iris-scorer")) == 1


def test_the_log_tail_keeps_the_last_meaningful_lines() -> None:
    log = "\n".join(["Step 1/3 : FROM x", " ---> abc123def456", "", "a1b2c3d4e5f6: Pull complete",
                     "password: \"hunter2hunter2\"", "boom"])
    lines, total = meaningful_tail(log, limit=2)
    assert lines == ['password: "***"', "boom"] or lines[-1] == "boom"
    assert total == 3


def test_an_unknown_builder_is_refused_before_anything_is_contacted(azure_world: AzureWorld) -> None:
    environment = azure_world.desired().environment
    settings = {**environment.settings, "images": {"builder": "docker"}}
    with pytest.raises(PermanentProviderError, match="azure.images.builder is 'docker'; use one of aml, acr-tasks"):
        AzureProvider(replace(environment, settings=settings))
    azure_world.edit("environment.yaml", "  registries:\n", "    images:\n      builder: docker\n  registries:\n")
    with pytest.raises(SpecError) as invalid:  # `reconciler validate` says so first (the schema)
        azure_world.desired()
    (problem,) = invalid.value.diagnostics
    assert "builder" in str(problem) and "environment.yaml" in str(problem)
    assert azure_world.emulator.calls() == []


def test_lost_answers_of_the_upload_and_the_schedule_are_sent_again(azure_world: AzureWorld) -> None:
    use_acr_tasks(azure_world)
    faults = azure_world.emulator.faults
    upload = faults.lose_answers(method="PUT", host=r".*\.blob\.core\.windows\.net", path="/source/", times=1)
    schedule = faults.lose_answers(method="POST", path="scheduleRun$", times=1)
    azure_world.apply()
    assert (upload.injected, schedule.injected) == (1, 1)
    runs = acr_tasks.runs_of(azure_world.emulator.state)
    assert len(runs) == 2 and runs[0].request["imageNames"] == runs[1].request["imageNames"]  # the same build twice
    assert len(acr.list_tags(azure_world.emulator.state, ACR, "iris-scorer")) == 1  # one image for the label
    assert not azure_world.plan().has_changes


def test_on_sdk_v2_a_build_records_its_inputs_in_the_default_datastore(azure_world: AzureWorld,
                                                                       tmp_path: Path) -> None:
    azure_world.edit("environment.yaml", "  registries:\n", "    ml:\n      sdk: v2\n  registries:\n")
    azure_world.apply(kinds=frozenset({Kind.MODEL}))
    azure_world.emulator.reset_log()
    plan = azure_world.apply(kinds=frozenset({Kind.IMAGE}))
    (image,) = [c.desired for c in plan.changes if c.key.kind is Kind.IMAGE]
    calls = azure_world.emulator.calls()
    folder = f"LocalUpload/edge-reconciler.iris-scorer.{image.label}/"  # type: ignore[union-attr]
    datastore = [(c.method, c.path.rsplit("/", 1)[-1]) for c in calls if "/datastores/" in c.path]
    listing = [c for c in calls if c.query.get("comp") == ["list"]]
    puts = [c for c in calls if c.method == "PUT" and f"/{folder}" in c.path]
    # The container's SAS once per run (datastores.get with its secrets), one List Blobs, a PUT per file, and all of
    # it before the build is scheduled; no artifact service on v2.
    assert datastore == [("GET", "workspaceblobstore"), ("POST", "listSecrets")]
    assert [c.query["prefix"] for c in listing] == [[folder]]
    assert sorted(c.path.split(folder, 1)[1] for c in puts) == [
        "image/app/conda.yaml", "image/app/model/model.json", "image/app/score.py", "image/app/train.py",
        "image/environment/conda.yaml", "image/image.json"]
    schedule = next(i for i, c in enumerate(calls) if c.path.endswith("/listBuildSourceUploadUrl"))
    assert max(calls.index(c) for c in puts) < schedule
    assert not any("/artifact/" in c.path for c in calls)
    # Read back, as a plan's behaviour diff does: the app and the conda file as built, the model versions packaged,
    # and the model's files through MLClient.models.download.
    provider = azure_world.provider()
    built = provider.built_image_files("iris-scorer", image.label, tmp_path / "deployed")  # type: ignore[union-attr]
    assert built is not None and built.entry == "score.py"
    assert [(m.name, m.version) for m in built.models] == [("iris-classifier", 1)]
    assert (tmp_path / "deployed" / "environment" / "conda.yaml").is_file()
    assert (tmp_path / "deployed" / "app" / "score.py").read_bytes() == (
        azure_world.env_dir.parent.parent / "models" / "iris" / "score.py").read_bytes()
    built.copy("iris-classifier:1", tmp_path / "model")
    assert sorted(p.relative_to(tmp_path / "model").as_posix() for p in (tmp_path / "model").rglob("*")
                  if p.is_file()) == ["model/model.json"]


def test_after_switching_to_sdk_v2_an_image_built_on_v1_has_no_record_to_read(azure_world: AzureWorld,
                                                                              tmp_path: Path) -> None:
    plan = azure_world.apply()  # SDK v1, images by Model.package: recorded as workspace artifacts
    (image,) = [c.desired for c in plan.changes if c.key.kind is Kind.IMAGE]
    azure_world.edit("environment.yaml", "  registries:\n", "    ml:\n      sdk: v2\n  registries:\n")
    with pytest.raises(PermanentProviderError, match="nothing is recorded of what it was built from"):
        azure_world.provider().built_image_files("iris-scorer", image.label, tmp_path)  # type: ignore[union-attr]
    # and the record is there for SDK v1, were the environment switched back
    azure_world.edit("environment.yaml", "    ml:\n      sdk: v2\n", "")
    built = azure_world.provider().built_image_files("iris-scorer", image.label, tmp_path / "v1")  # type: ignore[union-attr]
    assert built is not None and [m.name for m in built.models] == ["iris-classifier"]
