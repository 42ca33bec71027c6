"""`reconciler import`: brownfield adoption, end to end through the CLI.

Each round trip: an unmanaged deployment made as its owner made it -> `import` (which changes nothing
in the backend) -> the plan is the adoption only (an in-place update adding the ownership labels, or a
visible replace for content the specs cannot reproduce) -> apply -> the plan has no changes, and the
deployment kept its id and content. Every manifest runs on the local backend; a few on Azure (emulator).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.hub.manifest import redact_passwords
from reconciler.model.state import LiveDeployment
from tests.e2e.backends import Backend, snapshot
from tests.e2e.brownfield import MANIFESTS, PASSWORD, Brownfield
from tests.e2e.helpers import Workspace, actions

AZURE_SUBSET = {"sim-temp-sensor", "gpu-scorer", "metrics-layer", "fleet-2024", "handwritten"}
REGISTRY = {"local": "local", "azure": "workspace"}


def empty_environment(ws: Workspace) -> None:
    """Keep only environment.yaml: the plan then shows what import brought, and nothing else."""
    for name in ("models.yaml", "images.yaml", "deployments.yaml"):
        (ws.env_dir / name).unlink()


def admin_credentials(ws: Workspace) -> None:
    """Azure: the registry's admin user, the credentials people paste into `az iot edge` manifests. (With the
    reconciler's own scoped tokens, no brownfield deployment can embed the same credentials: adopting it is
    a replace that moves its devices to the token.)"""
    ws.edit(f"{ws.env}/environment.yaml", "credentials: scopedToken", "credentials: adminUser")


def create(ws: Workspace, backend: Backend, deployment: Brownfield) -> dict[str, Any]:
    registry = snapshot(ws.env_dir).registries[REGISTRY[backend.name]]
    content = deployment.with_registry(registry.name, registry.address, registry.username)
    backend.create_brownfield(ws.env_dir, deployment, content)
    return content


def live(ws: Workspace, deployment_id: str) -> LiveDeployment:
    return next(d for d in snapshot(ws.env_dir).deployments if d.id == deployment_id)


def spec_texts(ws: Workspace) -> str:
    return "".join(path.read_text() for path in sorted(ws.env_dir.glob("*.yaml")))


def round_trip(ws: Workspace, backend: Backend, deployment: Brownfield) -> None:
    empty_environment(ws)
    if backend.name == "azure":
        admin_credentials(ws)
    content = create(ws, backend, deployment)
    before = snapshot(ws.env_dir)

    result = ws.run("import", ws.env)
    assert result.code == 0, result.err
    assert snapshot(ws.env_dir) == before, "import changed the backend"
    written = ws.env_dir / f"imported-{deployment.name}.yaml"
    assert written.exists(), result.out
    assert PASSWORD not in spec_texts(ws)
    how = "adopted in place" if deployment.exact else "adopted by replacing it (see below)"
    assert f"-> imported-{deployment.name}.yaml (deployment/{deployment.name}; {how})" in result.out, result.out

    plan = ws.plan_json()
    key = f"deployment/{deployment.name}"
    assert actions(plan) == [(key, "update" if deployment.exact else "replace")], plan
    change = plan["changes"][0]  # type: ignore[index]
    assert f"adopts unmanaged deployment {deployment.id}" in change["reason"], change

    ws.apply()
    assert actions(ws.plan_json()) == [], "the plan after the adoption is not empty"
    owned = [d for d in snapshot(ws.env_dir).deployments if d.owner == ws.env_dir.name]
    assert [d.name for d in owned] == [deployment.name]
    if deployment.exact:  # adopted in place: same id, same content, same labels and metrics
        adopted = owned[0]
        assert adopted.id == deployment.id
        assert adopted.content == redact_passwords(content)
        assert adopted.labels == deployment.labels
        assert adopted.metrics == deployment.metrics
        assert adopted.priority == deployment.priority and adopted.target_condition == deployment.condition
    else:  # replaced: the unmanaged one is gone
        assert all(d.id != deployment.id for d in snapshot(ws.env_dir).deployments)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
@pytest.mark.parametrize("deployment", MANIFESTS, ids=[m.id for m in MANIFESTS])
def test_round_trip_local(ws: Workspace, backend: Backend, deployment: Brownfield) -> None:
    round_trip(ws, backend, deployment)


@pytest.mark.parametrize("backend", ["azure"], indirect=True)
@pytest.mark.parametrize("deployment", [m for m in MANIFESTS if m.id in AZURE_SUBSET],
                         ids=[m.id for m in MANIFESTS if m.id in AZURE_SUBSET])
def test_round_trip_azure(ws: Workspace, backend: Backend, deployment: Brownfield) -> None:
    round_trip(ws, backend, deployment)


def test_createoptions_are_yaml_and_chunks_are_joined(ws: Workspace, backend: Backend) -> None:
    empty_environment(ws)
    gpu = next(m for m in MANIFESTS if m.id == "gpu-scorer")
    content = create(ws, backend, gpu)
    assert "createOptions02" in json.dumps(content)  # the fixture really is split in three
    assert ws.run("import", ws.env).code == 0
    text = (ws.env_dir / "imported-gpu-scorer.yaml").read_text()
    assert "createOptions:\n        Env:\n" in text and "Runtime: nvidia" in text
    assert "createOptions01" not in text and '\\"' not in text


def test_import_only_reads_the_backend(ws: Workspace, backend: Backend) -> None:
    """Everything import sends to Azure is a read: GETs, device queries and sign-in token requests."""
    empty_environment(ws)
    for deployment in MANIFESTS[:3]:
        create(ws, backend, deployment)
    before = snapshot(ws.env_dir)
    emulator = getattr(backend, "emulator", None)
    if emulator is not None:
        emulator.log.reset()
    assert ws.run("import", ws.env).code == 0
    assert snapshot(ws.env_dir) == before
    if emulator is not None:
        calls = emulator.log.calls()
        assert calls
        writes = [f"{c.method} {c.host}{c.path}" for c in calls if c.method != "GET"
                  and not (c.method == "POST" and c.path.endswith("/devices/query"))  # a device query
                  and not (c.method == "POST" and c.host == "login.microsoftonline.com")]  # a sign-in token
        assert writes == []


def test_id_pattern_selects(ws: Workspace, backend: Backend) -> None:
    empty_environment(ws)
    for deployment in MANIFESTS[:4]:
        create(ws, backend, deployment)
    result = ws.run("import", ws.env, "--id", "*-layer")
    assert result.code == 0, result.err
    assert sorted(p.name for p in ws.env_dir.glob("imported-*.yaml")) == ["imported-metrics-layer.yaml"]


def test_an_id_that_is_not_there_writes_nothing(ws: Workspace, backend: Backend) -> None:
    empty_environment(ws)
    create(ws, backend, MANIFESTS[0])
    result = ws.run("import", ws.env, "--id", "no-such-*")
    assert result.code == 1
    assert result.err == ("error: --id no-such-*: no unmanaged deployment in the hub matches (unmanaged "
                          "deployments: sim-temp-sensor); nothing was written\n")
    assert list(ws.env_dir.glob("imported-*.yaml")) == []


def test_an_existing_file_is_refused_unless_force(ws: Workspace, backend: Backend) -> None:
    empty_environment(ws)
    for deployment in MANIFESTS[:2]:
        create(ws, backend, deployment)
    in_the_way = ws.env_dir / "imported-sim-temp-sensor.yaml"
    in_the_way.write_text("# mine\n")
    result = ws.run("import", ws.env)
    assert result.code == 1
    assert result.err == (f"error: imported-sim-temp-sensor.yaml exists already in {ws.env_dir}; nothing was "
                          "written. Pass --force to overwrite, or choose deployments with --id\n")
    assert in_the_way.read_text() == "# mine\n"
    assert not (ws.env_dir / "imported-filter-pipeline.yaml").exists()
    result = ws.run("import", ws.env, "--force")
    assert result.code == 0, result.err
    assert "adopt: sim-temp-sensor" in in_the_way.read_text()
    # Importing again after the adoption: the deployment is managed now, nothing unmanaged is left.
    ws.apply()
    again = ws.run("import", ws.env, "--id", "sim-temp-sensor")
    assert again.code == 1
    assert "is managed by edge-reconciler already" in again.err


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_credentials_of_an_undeclared_registry(ws: Workspace, backend: Backend) -> None:
    """The hub's credentials name a registry environment.yaml does not declare: nothing secret is written, the
    output says what to declare, and the spec (without credentials) would replace the deployment, visibly."""
    empty_environment(ws)
    deployment = MANIFESTS[0]
    content = deployment.with_registry("contosoacr", "contosoacr.azurecr.io", "contosoacr")
    backend.create_brownfield(ws.env_dir, deployment, content)
    result = ws.run("import", ws.env)
    assert result.code == 0, result.err
    assert PASSWORD not in spec_texts(ws) and PASSWORD not in result.out
    assert ("registry credentials for contosoacr.azurecr.io (user contosoacr) were not written: no registry of "
            "environment.yaml has that address") in result.out
    assert "Add to environment.yaml, under spec.registries:\n  contosoacr: {...}" in result.out
    assert "content.$edgeAgent.properties.desired.runtime.settings.registryCredentials" in result.out
    assert actions(ws.plan_json()) == [("deployment/sim-temp-sensor", "replace")]


def test_only_the_adopted_deployment_is_touched(ws: Workspace, backend: Backend, tmp_path: Path) -> None:
    """`adopt` names one deployment; other unmanaged deployments stay unmanaged and unchanged."""
    empty_environment(ws)
    first, second = MANIFESTS[0], MANIFESTS[1]
    create(ws, backend, first)
    create(ws, backend, second)
    assert ws.run("import", ws.env, "--id", first.id).code == 0
    untouched = live(ws, second.id)
    ws.apply()
    assert live(ws, second.id) == untouched and untouched.owner is None
    assert live(ws, first.id).owner == ws.env_dir.name
