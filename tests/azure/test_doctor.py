"""``reconciler doctor`` end to end: the CLI, the engine and the Azure provider against the emulator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.main import main
from tests.azure.conftest import ACR, HUB, RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, AzureWorld
from tests.azure_emulator import arm


def doctor(capsys: pytest.CaptureFixture[str], env_dir: Path, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["doctor", str(env_dir), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lines(out: str) -> list[str]:
    return out.splitlines()


@pytest.fixture
def world(azure_world: AzureWorld) -> AzureWorld:
    arm.add_iot_hub(azure_world.emulator.state, SUBSCRIPTION, RESOURCE_GROUP, HUB, sku="S1", capacity=2)
    return azure_world


def test_every_check_passes_and_nothing_is_written(world: AzureWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.emulator.reset_log()
    code, out, err = doctor(capsys, world.env_dir)
    assert code == 0, out + err
    assert lines(out)[0] == "reconciler doctor: environment prod (azure backend)"
    assert "✓ Azure credential: the credential chain issued a token for Azure Resource Manager" in lines(out)
    assert (f"✓ IoT Hub {HUB}: list deployments: with $IOTHUB_CONNECTION_STRING: 0 configurations listed"
            in lines(out))
    assert ("✓ IoT Hub: configuration slots: 0 of 100 IoT Edge deployment slots used (0 by environment prod), "
            "0 of 100 automatic device configurations") in lines(out)
    assert "✓ IoT Hub: SKU and quotas: S1, 2 units: 40 queries per minute, 40 configuration writes per minute" \
        in lines(out)
    assert (f"✓ registry workspace: read: ACR {ACR} in {RESOURCE_GROUP}, login server {ACR}.azurecr.io"
            in lines(out))
    assert any(line.startswith("✓ registry workspace: manage tokens: 0 tokens and ")
               and "scope maps listed, 0 tokens of this environment;" in line for line in lines(out))
    assert any(line.startswith("✓ Azure ML workspace mlw-edge-prod: register models: 0 model versions")
               for line in lines(out))
    assert any(line.startswith("· api-version: IoT Hub data plane: 2021-04-12 (azure-iot-hub ") for line in lines(out))
    assert any(line.startswith("· api-version: ACR management: 2025-04-01 (") for line in lines(out))
    assert lines(out)[-1] == "Every check passed."
    writes = [c for c in world.emulator.calls() if c.method in ("PUT", "PATCH", "DELETE")
              or (c.method == "POST" and c.host != "login.microsoftonline.com")]
    assert writes == []


def test_a_missing_role_is_named_with_what_to_do(world: AzureWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.emulator.faults.add(method="GET", host="management.azure.com", path=r"/tokens$", status=403,
                              code="AuthorizationFailed")
    world.emulator.faults.add(method="GET", host=HUB.replace(".", r"\."), path=r"^/configurations/?$", status=401,
                              code="IotHubUnauthorizedAccess")
    code, out, _ = doctor(capsys, world.env_dir)
    assert code == 1
    tokens = lines(out).index(next(line for line in lines(out) if line.startswith("✗ registry workspace: manage")))
    assert lines(out)[tokens].startswith("✗ registry workspace: manage tokens: missing role: the identity may not "
                                         "list the registry's tokens (HTTP 403")
    assert lines(out)[tokens + 1] == ("    → grant the identity \"Contributor\" on the registry: tokens, scope maps "
                                      "and generateCredentials are management-plane writes (AcrPull and AcrPush do "
                                      "not allow them)")
    assert any(line.startswith(f"✗ IoT Hub {HUB}: list deployments: not signed in: HTTP 401") for line in lines(out))
    assert "2 checks failed: an apply would fail too; fix what the → lines say and run `reconciler doctor` again." \
        in lines(out)


def test_without_a_credential_the_arm_checks_fail(azure_world: AzureWorld, capsys: pytest.CaptureFixture[str]) -> None:
    azure_world.emulator.state.service("aad")["clients"] = {"edge-reconciler-ci": "the-right-secret"}
    code, out, err = doctor(capsys, azure_world.env_dir)
    assert code == 1
    assert any(line.startswith("✗ Azure credential: no token for Azure Resource Manager: ") for line in lines(out))
    assert "✗ registry workspace: read: not checked: no Azure credential" in lines(out)
    # the hub has its own connection string: its checks still run
    assert any(line.startswith(f"✓ IoT Hub {HUB}: list deployments") for line in lines(out))
    assert "client-secret-that-must-never-leak" not in out + err


def test_json_output(world: AzureWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world.emulator.faults.add(method="GET", host="management.azure.com", path=r"/tokens$", status=403,
                              code="AuthorizationFailed")
    code, out, _ = doctor(capsys, world.env_dir, "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert (data["environment"], data["provider"], data["ok"]) == ("prod", "azure", False)
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["registry workspace: manage tokens"] == "fail"
    assert statuses["Azure credential"] == "ok"
    assert statuses["api-version: IoT Hub data plane"] == "info"


def test_the_hub_resource_unreadable_is_a_warning(azure_world: AzureWorld, capsys: pytest.CaptureFixture[str]) -> None:
    azure_world.emulator.faults.add(method="GET", host="management.azure.com", path=r"Microsoft\.Devices/IotHubs$",
                                    status=403, code="AuthorizationFailed")
    code, out, _ = doctor(capsys, azure_world.env_dir)
    assert code == 0
    assert any(line.startswith("! IoT Hub: SKU and quotas: the identity may not read the hub's Azure resource "
                               "(HTTP 403") for line in lines(out))
    assert lines(out)[-1] == "Every check passed (1 warning)."


def test_write_probe_creates_reads_back_and_deletes(world: AzureWorld, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = doctor(capsys, world.env_dir, "--write-probe")
    assert code == 0, out + err
    created = next(line for line in lines(out) if line.startswith("✓ write probe: create er-doctor-probe-"))
    probe_id = created.split()[4].rstrip(":")
    assert ("· write probe: registry passwords read back: readable in GET /configurations/{id} and GET "
            "/configurations; not needed: token passwords are kept in the hub's password store") in lines(out)
    assert any(line.startswith("· write probe: metrics right after creation: systemMetrics.results: ")
               for line in lines(out))
    assert f"✓ write probe: delete {probe_id}: deleted" in lines(out)
    assert world.configurations() == {}
    put = world.hub_requests("PUT", f"/configurations/{probe_id}")
    assert len(put) == 1
    body = json.loads(put[0].body)
    assert body["labels"] == {"created-by": "edge-reconciler-doctor"}
    assert body["targetCondition"] == "deviceId='er-doctor-probe-no-such-device'"
    password = body["content"]["modulesContent"]["$edgeAgent"]["properties.desired"]["runtime"]["settings"][
        "registryCredentials"]["doctorprobe"]["password"]
    assert password not in out + err


def test_write_probe_deletes_even_when_the_read_back_fails(world: AzureWorld,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    world.emulator.faults.add(method="GET", host=HUB.replace(".", r"\."), path=r"^/configurations/er-doctor-probe-",
                              status=500, code="ServerError")
    code, out, _ = doctor(capsys, world.env_dir, "--write-probe")
    assert code == 1
    assert any(line.startswith("✗ write probe: read back: ") for line in lines(out))
    assert any(line.startswith("✓ write probe: delete er-doctor-probe-") for line in lines(out))
    assert world.configurations() == {}


def test_local_backend_checks_its_state_folder(sample_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(state))
    code, out, _ = doctor(capsys, sample_env)
    assert code == 0
    assert lines(out)[:4] == [
        "reconciler doctor: environment local (local backend)", "",
        "· backend: the local backend needs no credentials, roles or quotas: only its state folder is checked",
        f"✓ state folder: {state} does not exist yet; the first apply creates it",
    ]
    assert not state.exists()


def _masking_reads(world: AzureWorld) -> None:
    """Make the emulated hub answer configuration reads with registry passwords left out, as a hub that masks
    credentials would: the real routes answer, then the passwords are dropped from a copy of their answer."""
    from tests.azure_emulator.framework import Request, Response, Route

    def masked(body: Any) -> Any:
        body = copy.deepcopy(body)
        for cfg in body if isinstance(body, list) else [body]:
            agent = ((cfg.get("content") or {}).get("modulesContent") or {}).get("$edgeAgent") or {}
            settings = ((agent.get("properties.desired") or {}).get("runtime") or {}).get("settings") or {}
            for credential in (settings.get("registryCredentials") or {}).values():
                credential.pop("password", None)
        return body

    emulator = world.emulator
    wrapped = []
    for path in ("/configurations/er-doctor-probe-x", "/configurations"):
        sample = Request("GET", HUB, path, {}, {}, b"")
        original = next(route for route in emulator.routes if route.match(sample) is not None)

        def handler(request: Request, state: Any, original: Route = original) -> Response:
            request.params = original.match(request) or {}
            response = original.handler(request, state)
            return Response(response.status, masked(response.body), response.headers)

        wrapped.append(Route("GET", original.host, original.path, handler))
    emulator.routes[:0] = wrapped


def test_write_probe_says_when_passwords_do_not_come_back(world: AzureWorld,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _masking_reads(world)
    try:
        code, out, _ = doctor(capsys, world.env_dir, "--write-probe")
    finally:
        del world.emulator.routes[:2]
    assert code == 0  # the design does not need them back (the password store)
    assert ("· write probe: registry passwords read back: the hub does not return them as written (GET "
            "/configurations/{id}: left out, GET /configurations: left out); not needed: token passwords are kept "
            "in the hub's password store") in lines(out)
    assert any(line.startswith("✓ write probe: delete er-doctor-probe-") for line in lines(out))
    assert world.configurations() == {}


def test_the_tier_sets_the_quotas_and_the_slots(azure_world: AzureWorld, capsys: pytest.CaptureFixture[str]) -> None:
    arm.add_iot_hub(azure_world.emulator.state, SUBSCRIPTION, RESOURCE_GROUP, HUB, sku="F1")
    code, out, _ = doctor(capsys, azure_world.env_dir)
    assert code == 0
    assert ("! IoT Hub: SKU and quotas: F1, 1 unit: 20 queries per minute, 20 configuration writes per minute"
            in lines(out))
    assert any(line.startswith("✓ IoT Hub: configuration slots: 0 of 10 IoT Edge deployment slots used")
               for line in lines(out))
    arm.add_iot_hub(azure_world.emulator.state, SUBSCRIPTION, RESOURCE_GROUP, HUB, sku="B1")
    code, out, _ = doctor(capsys, azure_world.env_dir)
    assert code == 1
    assert ("    → the Basic tier has no IoT Edge deployments: move the hub to a Standard tier"
            in lines(out))


def test_on_sdk_v2_the_models_are_listed_through_azure_ai_ml(world: AzureWorld,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    world.edit("environment.yaml", "  registries:\n", "    ml:\n      sdk: v2\n  registries:\n")
    world.emulator.reset_log()
    code, out, err = doctor(capsys, world.env_dir)
    assert code == 0, out + err
    assert any(line.startswith("✓ Azure ML workspace mlw-edge-prod: register models: 0 model versions")
               for line in lines(out))
    assert any(line.startswith("· api-version: Azure ML models (SDK v2): 2023-08-01-preview (azure-ai-ml 1.")
               for line in lines(out))
    assert not world.emulator.calls(host=r".*\.modelmanagement\.azureml\.net")  # nothing through SDK v1
    assert world.emulator.calls("GET", "management.azure.com", f"/workspaces/{WORKSPACE}/models")
