"""Build once, promote, through the CLI on both backends: environments/dev builds iris-scorer, the
production environment names it with ``promoteFrom`` and runs the very same bytes.

local: environments/dev and environments/local, each with its own state folder; the promotion copies the
OCI layout between them. azure: environments/dev (its own workspace and registry) and environments/prod, in
one emulated Azure; the promotion is ACR's importImage. Digests are read from each backend's own registry,
not from the reconciler's output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import copy_sample
from tests.e2e.helpers import Workspace

PROMOTED = """apiVersion: reconciler/v1
kind: Image
metadata:
  name: iris-scorer
  description: The iris scorer that environment dev built and tested.
spec:
  promoteFrom:
    environment: dev
    image: iris-scorer
"""
DEV_RESOURCE_GROUP = "rg-edge-dev"
DEV_WORKSPACE = "mlw-edge-dev"
DEV_ACR = "contosoedgedev"


@dataclass
class Pair:
    dev: Workspace
    prod: Workspace
    digest: Callable[[str, str], str | None]  # (environment folder name, label) -> the registry's digest
    builds: Callable[[], int]  # image builds the backend has run for prod (never one: it is promoted)
    emulator: Any = None  # azure: the emulated Azure


def _split(root: Path, sample: str, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """environments/dev from the sample (its model and image only) and the sample itself promoting from it."""
    prod = copy_sample(root, sample)
    dev = root / "environments" / "dev"
    dev.mkdir()
    for name in ("models.yaml", "images.yaml"):
        (dev / name).write_text((prod / name).read_text())
    (prod / "images.yaml").write_text(PROMOTED)
    (prod / "models.yaml").unlink()  # prod registers nothing: the image comes with its model inside
    return dev, prod


@pytest.fixture(params=["local", "azure"])
def pair(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    root = tmp_path / "repo"
    if request.param == "local":
        monkeypatch.delenv("RECONCILER_STATE_DIR", raising=False)  # one state folder per environment
        monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
        dev, prod = _split(root, "local", capsys)
        text = (prod / "environment.yaml").read_text()
        (dev / "environment.yaml").write_text(text.replace("name: local", "name: dev").replace(
            "stateDir: .reconciler/local", "stateDir: .reconciler/dev"))

        def local_digest(environment: str, label: str) -> str | None:
            index = root / ".reconciler" / environment / "images" / "iris-scorer" / label / "oci" / "index.json"
            return str(json.loads(index.read_text())["manifests"][0]["digest"]) if index.is_file() else None

        yield Pair(Workspace(root, dev, capsys), Workspace(root, prod, capsys), local_digest, lambda: 0)
        return

    from tests.azure import conftest as azure
    from tests.azure_emulator import acr, arm
    from tests.e2e.backends import AzureBackend

    emulator = request.getfixturevalue("azure_emulator_for_e2e")
    backend = AzureBackend(emulator, tmp_path)
    prod = backend.prepare(root, monkeypatch)
    arm.add_workspace(emulator.state, azure.SUBSCRIPTION, DEV_RESOURCE_GROUP, DEV_WORKSPACE, registry_name=DEV_ACR)
    dev, prod = _split(root, "prod", capsys)
    text = (prod / "environment.yaml").read_text()
    (dev / "environment.yaml").write_text(
        text.replace("name: prod", "name: dev").replace("resourceGroup: rg-edge-prod", f"resourceGroup: "
                                                                                      f"{DEV_RESOURCE_GROUP}")
        .replace("workspace: mlw-edge-prod", f"workspace: {DEV_WORKSPACE}").replace("acr: contosoedgeprod",
                                                                                     f"acr: {DEV_ACR}"))
    registries = {"dev": DEV_ACR, "prod": azure.ACR}

    def azure_digest(environment: str, label: str) -> str | None:
        tag = acr.list_tags(emulator.state, registries[environment], "iris-scorer").get(label)
        return tag.digest if tag is not None else None

    def prod_builds() -> int:
        return len([c for c in emulator.calls("POST", path_contains="/packages") if azure.WORKSPACE in c.path])

    yield Pair(Workspace(root, dev, capsys), Workspace(root, prod, capsys), azure_digest, prod_builds, emulator)
    assert emulator.errors == [], emulator.errors[0] if emulator.errors else ""
    assert emulator.unmatched == [], [f"{r.method} {r.host}{r.path}" for r in emulator.unmatched]


def _image_change(plan: dict[str, object]) -> dict[str, object]:
    changes = plan["changes"]
    assert isinstance(changes, list)
    (change,) = [c for c in changes if c["resource"] == "image/iris-scorer"]
    assert isinstance(change, dict)
    return change


def test_dev_builds_prod_promotes_the_same_digest_then_plans_no_changes(pair: Pair) -> None:
    refused = pair.prod.run("plan", pair.prod.env)
    assert refused.code == 1 and "Traceback" not in refused.err
    assert "image/iris-scorer: spec.promoteFrom: environment 'dev' has not built iris-scorer:" in refused.err
    assert "apply environments/dev first, then plan again; nothing was applied" in refused.err
    assert pair.prod.run("apply", pair.prod.env, "--auto-approve").code == 1
    tested = pair.prod.run("test", pair.prod.env, "--image", "iris-scorer")
    assert tested.code == 1 and "image 'iris-scorer' is promoted from environment 'dev', not built here: its " \
        "samples run there (reconciler test environments/dev --image iris-scorer)" in tested.err

    pair.dev.apply()
    plan = pair.prod.plan_json()
    change = _image_change(plan)
    label = str(change["target"]).split(":")[1]
    built = pair.digest(pair.dev.env_dir.name, label)
    assert built is not None and pair.digest(pair.prod.env_dir.name, label) is None
    assert change["action"] == "create"
    assert change["promotion"] == {"environment": "dev", "image": "iris-scorer", "digest": built,
                                   "reference": change["promotion"]["reference"]}  # type: ignore[index]
    text = pair.prod.run("plan", pair.prod.env).out
    assert f'+ digest = "{built}"' in text

    pair.prod.apply()
    assert pair.digest(pair.prod.env_dir.name, label) == built  # the bytes tested in dev
    assert pair.builds() == 0
    again = pair.prod.run("plan", pair.prod.env, "--detailed-exitcode")
    assert again.code == 0, again.out
    assert "No changes" in again.out


def test_a_new_dev_build_is_promoted_as_a_new_version(pair: Pair) -> None:
    pair.dev.apply()
    pair.prod.apply()
    pair.dev.edit("models/iris/model/model.json", '"classes"', '"comment": "retrained in dev", "classes"')
    stale = pair.prod.run("plan", pair.prod.env)  # dev has not built the new inputs yet
    assert stale.code == 1 and "has not built iris-scorer:" in stale.err
    pair.dev.apply()
    change = _image_change(pair.prod.plan_json())
    label = str(change["target"]).split(":")[1]
    rebuilt = pair.digest(pair.dev.env_dir.name, label)
    assert change["action"] == "update" and change["new_version"] is True
    assert change["promotion"]["digest"] == rebuilt  # type: ignore[index]
    pair.prod.apply()
    assert pair.digest(pair.prod.env_dir.name, label) == rebuilt
    assert pair.prod.run("plan", pair.prod.env, "--detailed-exitcode").code == 0


def test_an_import_whose_answer_was_lost_is_not_sent_again(pair: Pair) -> None:
    """ACR imported, the answer never came: the apply finds the tag and goes on (a repeat with NoForce would
    fail on it); one import, the digest as in dev, and nothing left to do."""
    if pair.emulator is None:
        pytest.skip("an Azure fault")
    pair.dev.apply()
    label = str(_image_change(pair.prod.plan_json())["target"]).split(":")[1]
    rule = pair.emulator.faults.lose_answers(method="POST", path="/importImage$", times=1)
    pair.prod.apply()
    assert rule.injected == 1
    assert len(pair.emulator.calls("POST", path_contains="/importImage")) == 1
    assert pair.digest("prod", label) == pair.digest("dev", label) is not None
    assert pair.prod.run("plan", pair.prod.env, "--detailed-exitcode").code == 0


def test_local_source_layout_gone_or_damaged_stops_the_apply(pair: Pair) -> None:
    """Dev's record says it built the label, but its OCI layout is damaged or gone: the promotion stops with
    what to do, and prod holds no image (nothing half-copied)."""
    if pair.emulator is not None:
        pytest.skip("the local backend's files")
    pair.dev.apply()
    label = str(_image_change(pair.prod.plan_json())["target"]).split(":")[1]
    built = pair.digest("dev", label)
    assert built is not None
    blobs = pair.dev.root / ".reconciler" / "dev" / "images" / "iris-scorer" / label / "oci" / "blobs" / "sha256"
    layer = max(blobs.iterdir(), key=lambda path: path.stat().st_size)
    original = layer.read_bytes()
    layer.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    damaged = pair.prod.run("apply", pair.prod.env, "--auto-approve")
    assert damaged.code == 1 and "Traceback" not in damaged.err
    assert f"blob sha256:{layer.name} of the source image does not match its digest" in damaged.err
    assert pair.digest("prod", label) is None
    layer.write_bytes(original)
    (blobs / built.removeprefix("sha256:")).unlink()
    gone = pair.prod.run("apply", pair.prod.env, "--auto-approve")
    assert gone.code == 1
    assert f"environment 'dev' no longer has localhost/iris-scorer:{label} ({built}): run `reconciler plan` " \
           "again" in gone.err
    assert pair.digest("prod", label) is None
    images = pair.prod.root / ".reconciler" / "local" / "images"
    assert not images.exists() or list((images / "iris-scorer").iterdir()) == []
