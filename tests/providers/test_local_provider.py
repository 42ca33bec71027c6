"""The local backend through the real planner: specs on disk -> plan -> apply -> re-read."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.core import planner
from reconciler.errors import LockHeld, PermanentProviderError
from reconciler.model.plan import Action, Change, DesiredDeployment, Plan
from reconciler.model.specs import DesiredState, Kind, ResourceKey
from reconciler.model.state import LiveDeployment, Snapshot
from reconciler.providers import layout
from reconciler.providers.base import SilentProgress
from reconciler.providers.layout import PackagedModel
from reconciler.providers.local import images
from reconciler.providers.local.blobs import BlobStore
from reconciler.providers.local.provider import LocalProvider
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.conftest import apply_change

ENV = "dev"

ENVIRONMENT = """\
apiVersion: reconciler/v1
kind: Environment
metadata: {name: dev}
spec:
  provider: local
  registries:
    local: {}
"""

MODEL = """\
apiVersion: reconciler/v1
kind: Model
metadata:
  name: clf
  description: a classifier
  tags: {team: vision}
spec:
  path: ../../models/clf
  properties: {source: train.py}
"""

IMAGE = """\
apiVersion: reconciler/v1
kind: Image
metadata: {name: scorer}
spec:
  sourceDirectory: ../../code
  entryScript: score.py
  condaFile: conda.yaml
  models: [clf]
"""

BASE = """\
apiVersion: reconciler/v1
kind: Deployment
metadata:
  name: base
  tags: {app: scorer}
spec:
  targetCondition: tags.site='a'
  priority: 10
  registry: local
  modules:
    scorer:
      image: scorer
"""

LAYER = """\
apiVersion: reconciler/v1
kind: Deployment
metadata: {name: sensor}
spec:
  layered: true
  targetCondition: tags.site='a' AND tags.sensor='yes'
  priority: 20
  modules:
    sensor:
      image: mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5
"""

SCORE = "def init():\n    pass\n\n\ndef run(input_data):\n    return input_data\n"
CONDA = "name: scorer\ndependencies:\n  - python=3.10\n"


class Repo:
    """A repository with one local environment, and the provider on its state folder."""

    def __init__(self, root: Path, state: Path):
        self.root = root
        self.state = state
        self.env_dir = root / "environments" / ENV
        (root / ".git").mkdir(parents=True)
        (root / "models" / "clf").mkdir(parents=True)
        (root / "models" / "clf" / "weights.json").write_text('{"w": [1, 2, 3]}')
        (root / "code").mkdir()
        (root / "code" / "score.py").write_text(SCORE)
        (root / "code" / "conda.yaml").write_text(CONDA)
        self.env_dir.mkdir(parents=True)
        (self.env_dir / "environment.yaml").write_text(ENVIRONMENT)
        self.write_specs(MODEL, IMAGE, BASE, LAYER)
        self.provider = LocalProvider(self.desired().environment)

    def write_specs(self, *documents: str) -> None:
        (self.env_dir / "specs.yaml").write_text("---\n".join(documents))

    def edit(self, old: str, new: str) -> None:
        path = self.env_dir / "specs.yaml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    def desired(self) -> DesiredState:
        return load_environment(self.env_dir)

    def snapshot(self, *, health: bool = False) -> Snapshot:
        return self.provider.read_snapshot(self.desired(), health=health)

    def plan(self, *, prune: bool = False) -> Plan:
        desired = self.desired()
        fingerprints = compute_fingerprints(desired, HashCache())
        return planner.plan(desired, fingerprints, self.provider.read_snapshot(desired), prune=prune)

    def apply(self, *, prune: bool = False) -> Plan:
        plan = self.plan(prune=prune)
        desired = self.desired()
        for change in plan.changes:
            apply_change(self.provider, change, desired.environment)
        return plan

    def deployment(self, name: str) -> LiveDeployment:
        (found,) = [d for d in self.snapshot().deployments if d.name == name]
        return found

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.state / "state.db")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Repo]:
    state = tmp_path / "state"
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(state))
    repo = Repo(tmp_path / "repo", state)
    yield repo
    repo.provider.close()


def actions(plan: Plan) -> list[tuple[str, str]]:
    return [(str(c.key), c.action.value) for c in plan.changes]


# --- reading ---------------------------------------------------------------------------


def test_reading_a_fresh_state_folder_creates_nothing(repo: Repo) -> None:
    snapshot = repo.snapshot(health=True)
    assert (snapshot.models, snapshot.images, snapshot.deployments) == ((), (), ())
    assert snapshot.image_registry == "localhost"
    assert repo.provider.count_devices("*") == 0
    registry = snapshot.registries["local"]
    assert (registry.address, registry.username, registry.credential_version) == ("localhost", "local-pull", "1")
    assert not repo.state.exists()


def test_default_state_folder_is_under_the_repository(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_STATE_DIR")
    provider = LocalProvider(repo.desired().environment)
    assert provider.directory == repo.root / ".reconciler" / ENV
    environment = replace(repo.desired().environment, settings={"stateDir": "var/state"})
    assert LocalProvider(environment).directory == repo.root / "var" / "state"


# --- the lifecycle ---------------------------------------------------------------------


def test_first_apply_then_the_plan_has_no_changes(repo: Repo) -> None:
    first = repo.apply()
    assert actions(first) == [("model/clf", "create"), ("image/scorer", "create"),
                              ("deployment/base", "create"), ("deployment/sensor", "create")]
    assert repo.plan().changes == ()

    snapshot = repo.snapshot()
    (model,) = snapshot.models
    assert (model.version, model.owner, model.tags, model.properties) == (1, ENV, {"team": "vision"},
                                                                          {"source": "train.py"})
    (image,) = snapshot.images
    assert image.reference == f"localhost/scorer:{image.label}" and image.owner == ENV
    base = repo.deployment("base")
    assert base.owner == ENV and base.labels == {"app": "scorer"} and not base.layered
    assert base.content["$edgeAgent"]["properties.desired"]["runtime"]["settings"]["registryCredentials"] == {
        "local": {"address": "localhost", "username": "local-pull", "password": "<secret:registry/local/password>"}}
    assert repo.deployment("sensor").layered
    # The ownership keys are kept in the backend, as Azure keeps them.
    (labels,) = repo.db().execute("SELECT labels FROM deployments WHERE name = 'base'").fetchone()
    assert json.loads(labels)["edge-reconciler.environment"] == ENV


def test_model_file_change_registers_version_2_rebuilds_and_replaces(repo: Repo) -> None:
    repo.apply()
    old_image = repo.snapshot().images[0]
    old_base = repo.deployment("base")
    (repo.root / "models" / "clf" / "weights.json").write_text('{"w": [4, 5, 6]}')

    plan = repo.apply()
    assert actions(plan) == [("model/clf", "new-version"), ("image/scorer", "new-version"),
                             ("deployment/base", "replace")]
    snapshot = repo.snapshot()
    assert [m.version for m in snapshot.models] == [1, 2]  # the old version stays
    assert snapshot.models[0].fingerprint != snapshot.models[1].fingerprint
    labels = {i.label for i in snapshot.images}
    assert len(labels) == 2 and old_image.label in labels  # a new label, the old build kept
    ids = {d.id for d in snapshot.deployments}
    new_base = repo.deployment("base")
    assert new_base.id != old_base.id and old_base.id not in ids
    new_label = next(label for label in labels if label != old_image.label)
    scorer = new_base.content["$edgeAgent"]["properties.desired"]["modules"]["scorer"]
    assert scorer["settings"]["image"] == f"localhost/scorer:{new_label}"
    assert repo.plan().changes == ()
    # Both versions' files are kept, content-addressed.
    assert len(list((repo.state / "blobs" / "sha256").iterdir())) == 2
    (packaged,) = repo.db().execute("SELECT models FROM images WHERE label = ?", (new_label,)).fetchone()
    assert json.loads(packaged) == {"clf": 2}


def test_versions_continue_after_versions_of_other_owners(repo: Repo) -> None:
    repo.apply()
    with repo.db() as db:
        db.execute("UPDATE models SET tags = '{}', owner = NULL")  # version 1 becomes someone else's
    assert actions(repo.plan())[0] == ("model/clf", "create")
    repo.apply()
    versions = [(m.version, m.owner) for m in repo.snapshot().models]
    assert versions == [(1, None), (2, ENV)]


def test_a_version_without_a_recorded_fingerprint_is_fingerprinted_from_its_files(repo: Repo) -> None:
    """The snapshot reads file lists only for such versions (``Store.models(files=False)``)."""
    repo.apply()
    (ours,) = repo.snapshot().models
    with repo.db() as db:  # as another tool registers it: same files, no fingerprint, no ownership
        db.execute("INSERT INTO models SELECT name, 2, NULL, description, '{}', properties, NULL, files, created "
                   "FROM models WHERE version = 1")
    theirs = repo.snapshot().models[1]
    assert (theirs.version, theirs.owner, theirs.fingerprint) == (2, None, ours.fingerprint)
    with repo.db() as db:
        db.execute("UPDATE models SET files = '{\"other.bin\": \"%s\"}' WHERE version = 2" % ("0" * 64))
    assert repo.snapshot().models[1].fingerprint not in (None, ours.fingerprint)


def test_model_metadata_changes_in_place_and_properties_are_add_only(repo: Repo) -> None:
    repo.apply()
    repo.edit("description: a classifier", "description: a better classifier")
    repo.edit("tags: {team: vision}", "tags: {team: platform}")
    repo.edit("properties: {source: train.py}", "properties: {owner: ml}")
    plan = repo.apply()
    assert actions(plan) == [("model/clf", "update")]
    assert plan.changes[0].action is Action.UPDATE
    (model,) = repo.snapshot().models
    assert model.version == 1
    assert (model.description, model.tags) == ("a better classifier", {"team": "platform"})
    assert model.properties == {"source": "train.py", "owner": "ml"}
    assert model.owner == ENV
    assert repo.plan().changes == ()


def test_priority_change_is_applied_in_place(repo: Repo) -> None:
    repo.apply()
    before = repo.deployment("base")
    repo.edit("priority: 10", "priority: 15")
    assert actions(repo.apply()) == [("deployment/base", "update")]
    after = repo.deployment("base")
    assert (after.id, after.created, after.priority) == (before.id, before.created, 15)
    assert after.owner == ENV and after.content_hash == before.content_hash


def test_replace_creates_the_new_deployment_before_deleting_the_old(repo: Repo,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo.apply()
    old = repo.deployment("base").id
    seen: list[set[str]] = []
    delete = repo.provider.store.delete_deployment

    def recording_delete(deployment_id: str) -> None:
        seen.append({d.id for d in repo.provider.store.deployments()})
        delete(deployment_id)

    monkeypatch.setattr(repo.provider.store, "delete_deployment", recording_delete)
    repo.edit("      image: scorer", "      image: scorer\n      env: {MODE: fast}")
    assert actions(repo.apply()) == [("deployment/base", "replace")]
    new = repo.deployment("base").id
    assert seen == [{old, new, repo.deployment("sensor").id}]


def test_an_interrupted_replace_converges_on_the_next_apply(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.apply()
    old = repo.deployment("base").id

    def crash(deployment_id: str) -> None:
        raise KeyboardInterrupt

    repo.edit("      image: scorer", "      image: scorer\n      env: {MODE: fast}")
    with monkeypatch.context() as patched:
        patched.setattr(repo.provider.store, "delete_deployment", crash)
        with pytest.raises(KeyboardInterrupt):
            repo.apply()
    plan = repo.plan()
    assert actions(plan) == [("deployment/base", "delete")]
    assert plan.changes[0].target == old
    repo.apply()
    assert repo.plan().changes == ()
    assert [d.name for d in repo.snapshot().deployments].count("base") == 1


def test_prune_deletes_owned_versions_builds_and_files(repo: Repo) -> None:
    repo.apply()
    label = repo.snapshot().images[0].label
    repo.write_specs()
    plan = repo.plan()
    assert plan.changes == () and [str(key) for key in plan.orphans] == [
        "deployment/base", "deployment/sensor", "image/scorer", "model/clf"]
    repo.apply(prune=True)
    snapshot = repo.snapshot()
    assert (snapshot.models, snapshot.images, snapshot.deployments) == ((), (), ())
    assert not (repo.state / "images" / "scorer" / label).exists()
    assert list((repo.state / "blobs" / "sha256").iterdir()) == []


# --- ownership -------------------------------------------------------------------------


def test_unmanaged_deployments_are_listed_and_never_touched(repo: Repo) -> None:
    repo.apply()
    content: dict[str, Any] = {"$edgeAgent": {"properties.desired": {"modules": {}}}}
    repo.provider.create_unmanaged_deployment("hand-made", content, "tags.site='a'", 50)
    plan = repo.plan(prune=True)
    assert plan.changes == () and plan.unmanaged == ("deployment/hand-made",)
    repo.apply(prune=True)
    hand_made = repo.deployment("hand-made")
    assert (hand_made.owner, hand_made.priority, hand_made.content) == (None, 50, content)


def planner_desired(repo: Repo, name: str) -> DesiredDeployment:
    """The deployment as the planner renders it from the specs."""
    desired = repo.desired()
    rendered = planner.desired_images(desired, compute_fingerprints(desired, HashCache()), "localhost")
    deployments, _ = planner.desired_deployments(desired, rendered, repo.snapshot())
    return deployments[name]


def test_foreign_deployments_are_never_updated_or_deleted(repo: Repo) -> None:
    repo.apply()
    repo.provider.create_unmanaged_deployment("hand-made", {"$edgeAgent": {}}, "tags.site='a'", 50, layered=True)
    with repo.db() as db:  # make the layer another environment's
        db.execute("UPDATE deployments SET labels = json_set(labels, '$.\"edge-reconciler.environment\"', 'prod') "
                   "WHERE name = 'sensor'")
    foreign = [repo.deployment("hand-made"), repo.deployment("sensor")]
    assert [d.owner for d in foreign] == [None, "prod"]
    desired = repo.desired()
    for live in foreign:
        delete = Change(ResourceKey(Kind.DEPLOYMENT, live.name), Action.DELETE, "test", actual=live)
        with pytest.raises(PermanentProviderError, match="the reconciler never changes it"):
            apply_change(repo.provider, delete, desired.environment)
    update = Change(ResourceKey(Kind.DEPLOYMENT, "base"), Action.UPDATE, "test",
                    desired=planner_desired(repo, "base"), actual=foreign[0])
    with pytest.raises(PermanentProviderError, match="owned by no environment"):
        apply_change(repo.provider, update, desired.environment)
    assert [repo.deployment("hand-made"), repo.deployment("sensor")] == foreign


def test_a_deployment_id_is_never_reused_and_the_hub_holds_at_most_100(repo: Repo) -> None:
    repo.provider.create_unmanaged_deployment("one", {"$edgeAgent": {}}, "*", 1, layered=True)
    with pytest.raises(PermanentProviderError, match="already exists"):
        repo.provider.create_unmanaged_deployment("one", {"$edgeAgent": {}}, "*", 1, layered=True)
    for index in range(99):
        repo.provider.create_unmanaged_deployment(f"d{index}", {"$edgeAgent": {}}, "*", 1, layered=True)
    with pytest.raises(PermanentProviderError, match="IoT Hub's limit"):
        repo.apply()
    assert len(repo.snapshot().deployments) == 100


# --- images ----------------------------------------------------------------------------


def test_an_image_needs_its_model_registered(repo: Repo) -> None:
    plan = repo.plan()
    image_change = next(c for c in plan.changes if c.key.kind is Kind.IMAGE)
    with pytest.raises(PermanentProviderError, match="the model was not registered"):
        apply_change(repo.provider, image_change, repo.desired().environment)


def _blob(oci: Path, digest: str) -> bytes:
    data = (oci / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
    return data


def test_the_build_is_a_valid_oci_layout_and_a_docker_context(repo: Repo) -> None:
    repo.apply()
    image = repo.snapshot().images[0]
    build = repo.state / "images" / "scorer" / image.label
    oci = build / "oci"
    assert json.loads((oci / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads((oci / "index.json").read_text())["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == image.reference
    (digest,) = repo.db().execute("SELECT digest FROM images").fetchone()
    assert entry["digest"] == digest
    manifest = json.loads(_blob(oci, digest))
    config = json.loads(_blob(oci, manifest["config"]["digest"]))
    (layer,) = manifest["layers"]
    compressed = _blob(oci, layer["digest"])
    assert layer["size"] == len(compressed) and layer["mediaType"].endswith("tar+gzip")
    tar_bytes = gzip.decompress(compressed)
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}"]
    assert "AZUREML_MODEL_DIR=/var/azureml-app/azureml-models/clf/1" in config["config"]["Env"]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: m for m in tar}
    assert {"var/azureml-app/score.py", "var/azureml-app/azureml-models/clf/1/clf/weights.json",
            "var/azureml-environment/conda.yaml"} <= set(members)
    assert {(m.mtime, m.uid, m.gid) for m in members.values()} == {(0, 0, 0)}

    context = build / "context"
    assert (context / "Dockerfile").read_text().startswith(f"# scorer:{image.label}: generated by edge-reconciler.")
    assert "FROM mcr.microsoft.com/azureml/" in (context / "Dockerfile").read_text()
    assert (context / "models" / "clf" / "1" / "clf" / "weights.json").read_text() == '{"w": [1, 2, 3]}'
    assert (context / "app" / "score.py").read_text() == SCORE


def test_builds_are_deterministic(repo: Repo, tmp_path: Path) -> None:
    spec = repo.desired().images["scorer"]
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put(repo.root / "models" / "clf" / "weights.json")
    model = PackagedModel("clf", 1, {"clf/weights.json": digest})
    first = images.build(tmp_path / "a" / "x", spec, "localhost/scorer:x", [model], blobs, SilentProgress())
    os.utime(repo.root / "code" / "score.py", (1, 1))  # mtimes do not matter
    second = images.build(tmp_path / "b" / "x", spec, "localhost/scorer:x", [model], blobs, SilentProgress())
    assert first == second
    (repo.root / "code" / "score.py").write_text(SCORE + "# changed\n")
    third = images.build(tmp_path / "c" / "x", spec, "localhost/scorer:x", [model], blobs, SilentProgress())
    assert third != first


# --- secrets ---------------------------------------------------------------------------


def test_no_password_at_rest_outside_the_secrets_folder(repo: Repo) -> None:
    repo.apply()
    secret_file = repo.state / "secrets" / "registry-local.json"
    password = json.loads(secret_file.read_text())["password"]
    assert len(password) >= 32
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert oct((repo.state / "secrets").stat().st_mode & 0o777) == "0o700"
    files = [p for p in repo.state.rglob("*") if p.is_file() and "secrets" not in p.relative_to(repo.state).parts]
    assert repo.state / "state.db" in files
    assert not [p for p in files if password.encode() in p.read_bytes()]
    assert password not in repr(repo.snapshot())
    (version,) = repo.db().execute("SELECT credential_version FROM registries WHERE name = 'local'").fetchone()
    assert version == "1"


def test_rotating_a_password_replaces_the_deployments_that_embed_it(repo: Repo) -> None:
    repo.apply()
    secret_file = repo.state / "secrets" / "registry-local.json"
    before = secret_file.read_text()
    assert repo.provider.rotate_registry_credentials("local") == "2"
    assert secret_file.read_text() != before
    assert repo.snapshot().registries["local"].credential_version == "2"
    plan = repo.apply()
    assert actions(plan) == [("deployment/base", "replace")]  # the layer embeds no credentials
    assert plan.changes[0].reason.endswith("registry credentials rotated")
    assert repo.plan().changes == ()
    with pytest.raises(PermanentProviderError, match="not declared"):
        repo.provider.rotate_registry_credentials("elsewhere")


# --- devices and health ----------------------------------------------------------------


def test_devices_are_counted_and_health_is_read_only_when_asked(repo: Repo) -> None:
    repo.provider.simulator.add([("a1", {"site": "a"}), ("a2", {"site": "a", "sensor": "yes"}), ("b1", {"site": "b"})])
    assert repo.provider.count_devices("tags.site='a'") == 2
    repo.apply()
    assert all(d.health is None for d in repo.snapshot().deployments)
    health = {d.name: d.health for d in repo.snapshot(health=True).deployments}
    assert health["base"] is not None and health["sensor"] is not None
    assert (health["base"].targeted, health["base"].applied, health["base"].succeeded) == (2, 2, 2)
    assert (health["sensor"].targeted, health["sensor"].applied) == (1, 1)
    repo.provider.simulator.set_failing("a1")
    failing = {d.name: d.health for d in repo.snapshot(health=True).deployments}["base"]
    assert failing is not None and (failing.succeeded, failing.failed) == (1, 1)


def test_device_management(repo: Repo) -> None:
    provider, devices = repo.provider, repo.provider.simulator
    devices.add([("cam-1", {"site": "a"})])
    with pytest.raises(PermanentProviderError, match="cam-1: this device exists already"):
        devices.add([("cam-2", {}), ("cam-1", {})])
    assert [d.id for d in devices.list()] == ["cam-1"]  # all or nothing
    with pytest.raises(PermanentProviderError, match="invalid device id"):
        devices.add([("bad id", {})])
    with pytest.raises(PermanentProviderError, match="invalid tag name"):
        devices.add([("cam-3", {"a.b": "x"})])
    assert devices.tag("cam-1", {"sensor": "yes"}, ["site"]).tags == {"sensor": "yes"}
    assert provider.count_devices("tags.sensor='yes'") == 1
    devices.remove("cam-1")
    with pytest.raises(PermanentProviderError, match="no such device"):
        devices.remove("cam-1")
    assert provider.count_devices("*") == 0


def test_device_view_names_the_deployment_of_each_module(repo: Repo) -> None:
    repo.provider.simulator.add([("a1", {"site": "a", "sensor": "yes"})])
    repo.apply()
    view = repo.provider.simulator.show("a1")
    modules = {name: deployment for name, (deployment, _) in view.modules.items()}
    assert modules == {"scorer": repo.deployment("base").id, "sensor": repo.deployment("sensor").id}
    assert view.modules["scorer"][1] == repo.snapshot().images[0].reference


# --- the lock --------------------------------------------------------------------------


def test_a_held_lock_is_refused_naming_the_holder(repo: Repo) -> None:
    other = LocalProvider(repo.desired().environment)
    with repo.provider.lock("alice@ci-runner-7 pid 4242"):
        with pytest.raises(LockHeld) as refused, other.lock("bob@laptop pid 1"):
            pass
        message = str(refused.value)
        assert "alice@ci-runner-7 pid 4242 since " in message
        lock_id = json.loads((repo.state / "apply.lock").read_text())["lock_id"]
        assert f"lock id {lock_id})" in message
        assert f"if that run died, remove the lock with `reconciler force-unlock <ENV_DIR> {lock_id}`" in message
    assert not (repo.state / "apply.lock").exists()
    with other.lock("bob@laptop pid 1"):
        record = json.loads((repo.state / "apply.lock").read_text())
        assert record["holder"] == "bob@laptop pid 1" and record["pid"] == os.getpid()


def test_the_lock_is_released_when_the_block_fails(repo: Repo) -> None:
    with pytest.raises(RuntimeError), repo.provider.lock("me"):
        raise RuntimeError("boom")
    assert not (repo.state / "apply.lock").exists()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over(repo: Repo,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    repo.state.mkdir()
    stale = {"holder": "ghost", "pid": _dead_pid(), "host": socket.gethostname(), "since": "2020-01-01T00:00:00"}
    (repo.state / "apply.lock").write_text(json.dumps(stale))
    with caplog.at_level(logging.WARNING), repo.provider.lock("me"):
        assert json.loads((repo.state / "apply.lock").read_text())["holder"] == "me"
    assert "taking over the apply lock left by ghost" in caplog.text


def test_a_lock_of_another_host_is_never_taken_over(repo: Repo) -> None:
    repo.state.mkdir()
    record = {"holder": "ci", "pid": _dead_pid(), "host": "elsewhere", "since": "2020-01-01T00:00:00"}
    (repo.state / "apply.lock").write_text(json.dumps(record))
    with pytest.raises(LockHeld, match="ci since 2020-01-01"), repo.provider.lock("me"):
        pass


# --- failures are provider errors that say what to do ----------------------------------


def test_model_files_changed_or_gone_since_the_plan(repo: Repo) -> None:
    plan, desired = repo.plan(), repo.desired()
    weights = repo.root / "models" / "clf" / "weights.json"
    weights.write_text('{"w": "changed after the plan"}')
    with pytest.raises(PermanentProviderError, match="changed since the plan was made"):
        apply_change(repo.provider, plan.changes[0], desired.environment)
    assert repo.snapshot().models == ()


def test_file_system_errors_become_provider_errors(repo: Repo) -> None:
    plan, desired = repo.plan(), repo.desired()
    repo.state.write_text("a file where the state folder should be")
    with pytest.raises(PermanentProviderError, match=r"^model/clf: .*check that .* is writable, then apply again"):
        apply_change(repo.provider, plan.changes[0], desired.environment)


def test_damaged_state_is_reported_with_what_to_do(repo: Repo) -> None:
    repo.apply()
    (repo.state / "secrets" / "registry-local.json").write_text("{not json")
    repo.edit("      image: scorer", "      image: scorer\n      env: {MODE: fast}")
    with pytest.raises(PermanentProviderError, match="registry-local.json is damaged; remove it"):
        repo.apply()
    with repo.db() as db:
        db.execute("UPDATE models SET tags = '{oops'")
    with pytest.raises(PermanentProviderError, match="cannot be used.*move the folder"):
        repo.snapshot()


def test_the_context_archive_is_deterministic_and_holds_the_context(repo: Repo, tmp_path: Path) -> None:
    repo.apply()
    image = repo.snapshot().images[0]
    context = repo.state / "images" / "scorer" / image.label / "context"
    first = layout.context_archive(context)
    for path in context.rglob("*"):
        os.utime(path, (12345, 12345))  # mtimes do not matter
    assert layout.context_archive(context) == first
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as tar:
        members = tar.getmembers()
        files = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}  # type: ignore[union-attr]
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid) for m in members} == {(0, 0, 0)}
    assert files == {p.relative_to(context).as_posix(): p.read_bytes() for p in context.rglob("*") if p.is_file()}
    assert gzip.decompress(first) and first[4:8] == b"\x00\x00\x00\x00"  # no gzip timestamp
