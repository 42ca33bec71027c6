"""Through the CLI, on Azure: an environment applied with Azure ML SDK v1 (models by azureml-core, images by
Azure ML's build service) is switched to ``azure.ml.sdk: v2`` (models by azure-ai-ml, images by ACR Tasks).

Azure ML keeps one model registry per workspace, whichever SDK registered a version, and both builders push
``<name>:<label>`` with the same labels into the workspace's registry: the switch itself changes nothing.
"""

from __future__ import annotations

import pytest

from tests.e2e.backends import AzureBackend, snapshot
from tests.e2e.helpers import Workspace, actions

pytestmark = pytest.mark.parametrize("backend", ["azure"], indirect=True)

MODEL_FILE = "models/iris/model/model.json"


def switch_to_v2(ws: Workspace) -> None:
    ws.edit(f"{ws.env}/environment.yaml", "  registries:\n", AzureBackend.SDK_V2 + "  registries:\n")


def test_switching_an_applied_environment_to_v2_plans_no_change(ws: Workspace, backend: AzureBackend) -> None:
    ws.apply()
    before = snapshot(ws.env_dir)

    switch_to_v2(ws)
    plan = ws.run("plan", ws.env, "--detailed-exitcode")

    assert plan.code == 0, plan.out + plan.err
    assert "No changes." in plan.out
    after = snapshot(ws.env_dir)
    assert (after.models, after.images, after.deployments) == (before.models, before.images, before.deployments)
    backend.emulator.reset_log()
    assert ws.run("apply", ws.env, "--auto-approve").out.strip() == "No changes. The actual state matches the specs."
    writes = [c for c in backend.emulator.calls() if c.method in ("PUT", "POST", "PATCH", "DELETE")
              and "/models" in c.path]
    assert writes == []  # nothing registered again


def test_a_model_changed_with_the_switch_is_exactly_a_new_version_built_by_acr_tasks(
        ws: Workspace, backend: AzureBackend) -> None:
    ws.apply()
    switch_to_v2(ws)
    ws.edit(MODEL_FILE, '"classes"', '"comment": "retrained", "classes"')

    plan = ws.plan_json()

    assert actions(plan) == [("model/iris-classifier", "update"), ("image/iris-scorer", "update"),
                             ("deployment/iris-base", "replace")]
    model, image, _ = plan["changes"]  # type: ignore[misc]
    assert model["reason"] == "model files changed: registers version 2"  # numbered after v1's version 1
    assert image["reason"].startswith("model iris-classifier changed: builds iris-scorer:")
    ws.apply()
    state = snapshot(ws.env_dir)
    assert sorted(m.version for m in state.models if m.name == "iris-classifier") == [1, 2]
    assert backend.emulator.calls("PUT", "management.azure.com", "/models/iris-classifier/versions/2")
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0


def seed_foreign_models(backend: AzureBackend, count: int) -> None:
    """``count`` model names of another tool in the workspace: one version each, no ownership tags."""
    from tests.azure import conftest as azure
    from tests.azure_emulator import aml, arm

    workspace = arm.find_workspace(backend.emulator.state, azure.SUBSCRIPTION, azure.RESOURCE_GROUP, azure.WORKSPACE)
    assert workspace is not None
    with backend.emulator.state.lock:
        counters = aml._aml(backend.emulator.state).setdefault("model_versions", {})
        for n in range(count):
            counters[(workspace.key, f"foreign-{n:02d}")] = 1
            aml._models(backend.emulator.state, workspace)[f"foreign-{n:02d}:1"] = aml.ModelRecord(
                f"foreign-{n:02d}", 1, "aml://asset/" + "0" * 32, kv_tags={"team": "someone-else"})


def version_listings(backend: AzureBackend) -> list[str]:
    return sorted(c.path.rsplit("/models/", 1)[1] for c in backend.emulator.calls("GET", "management.azure.com")
                  if c.path.endswith("/versions"))


def test_after_the_switch_the_first_apply_indexes_the_v1_models_and_foreign_names_cost_nothing(
        ws: Workspace, backend: AzureBackend) -> None:
    """Versions registered through v1 sit in containers without the ownership marker: v2 plans read every
    model name of the workspace until an apply with changes marks them; from then on, only the declared and
    marked names."""
    ws.apply()
    switch_to_v2(ws)
    seed_foreign_models(backend, 12)
    backend.emulator.reset_log()
    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0
    assert len(version_listings(backend)) == 13  # not indexed yet: every name

    ws.edit(MODEL_FILE, '"classes"', '"comment": "retrained", "classes"')
    ws.apply()
    backend.emulator.reset_log()

    assert ws.run("plan", ws.env, "--detailed-exitcode").code == 0
    assert version_listings(backend) == ["iris-classifier/versions"]
