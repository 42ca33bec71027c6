"""Writes whose answer is lost: the service acts, then the connection breaks before the answer arrives.

Each test loses exactly one answer of one kind of write (``emulator.faults.lose_answers``) during a whole
apply through the engine, and shows the apply converging in that same run: the next plan has no changes,
nothing was created twice, no lock is left behind, and every deployment embeds a password that works.
"""

from __future__ import annotations

from collections import Counter

import pytest

from reconciler.engine import Engine
from reconciler.model.specs import Kind
from reconciler.providers.azure import errors
from reconciler.providers.azure.lock import lock_device_id
from tests.azure.conftest import BOTH_PASSWORD_MODES, RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, AzureWorld
from tests.azure.test_azure_hub_registry import credentials_in, owned, token_password
from tests.azure_emulator import aml, arm

HUB_HOST = r".*\.azure-devices\.net"
ARM_HOST = r"management\.azure\.com"

#: (name, the write whose first answer is lost)
WRITES = [
    ("lock create", dict(host=HUB_HOST, method="PUT", path=r"^/devices/edge-reconciler-lock")),
    ("lock release", dict(host=HUB_HOST, method="DELETE", path=r"^/devices/edge-reconciler-lock")),
    ("model registration", dict(method="POST", path=r"/models$")),
    ("image build start", dict(method="POST", path=r"/packages$")),
    ("scope map create", dict(host=ARM_HOST, method="PUT", path=r"/scopeMaps/")),
    ("token create", dict(host=ARM_HOST, method="PUT", path=r"/tokens/")),
    ("token password", dict(host=ARM_HOST, method="POST", path=r"/generateCredentials$")),
    ("password store device", dict(host=HUB_HOST, method="PUT", path=r"^/devices/edge-reconciler-credentials")),
    ("password store record", dict(host=HUB_HOST, method="PATCH", path=r"^/twins/edge-reconciler-credentials")),
    ("deployment create", dict(host=HUB_HOST, method="PUT", path=r"^/configurations/")),
]


def models_in_workspace(world: AzureWorld) -> Counter[str]:
    workspace = arm.find_workspace(world.emulator.state, SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)
    assert workspace is not None
    return Counter(m.name for m in aml.models_in(world.emulator.state, workspace))


def assert_converged(world: AzureWorld) -> None:
    with Engine(world.env_dir) as engine:
        assert not engine.plan().has_changes
    assert lock_device_id("prod") not in world.hub.devices
    assert models_in_workspace(world) == Counter({"iris-classifier": 1})
    assert len(aml.packages_submitted(world.emulator.state)) == 1
    for cfg in owned(world).values():
        for entry in credentials_in(cfg).values():
            assert entry["password"] == token_password(world, entry["username"])  # devices can pull


@BOTH_PASSWORD_MODES
@pytest.mark.parametrize(("name", "write"), WRITES, ids=[name for name, _ in WRITES])
def test_a_first_apply_converges_in_one_run_when_one_answer_is_lost(azure_world: AzureWorld, name: str,
                                                                    write: dict[str, str]) -> None:
    lost = azure_world.emulator.faults.lose_answers(times=1, **write)
    with Engine(azure_world.env_dir) as engine:
        result = engine.apply()
    assert lost.injected == 1, f"the {name} was never sent"
    assert [c.key.kind for c in result.applied] == [Kind.MODEL, Kind.IMAGE, Kind.DEPLOYMENT, Kind.DEPLOYMENT]
    assert_converged(azure_world)


def test_a_register_sent_twice_by_the_sdk_leaves_one_version(azure_world: AzureWorld) -> None:
    """The defect: the register answer was lost, the request went again, and the environment ended with two
    versions of one content. (azureml's transport repeats a POST on a reset connection by itself: the
    provider finds the twin and deletes it.)"""
    lost = azure_world.emulator.faults.lose_answers(method="POST", path=r"/models$", times=1)
    with Engine(azure_world.env_dir) as engine:
        engine.apply()
    posts = [c for c in azure_world.emulator.calls("POST") if c.path.endswith("/models")]
    assert lost.injected == 1 and len(posts) >= 1
    assert models_in_workspace(azure_world) == Counter({"iris-classifier": 1})


def test_a_deployment_update_whose_answer_is_lost_is_done(azure_world: AzureWorld) -> None:
    with Engine(azure_world.env_dir) as engine:
        engine.apply()
    azure_world.edit("deployments.yaml", "priority: 10", "priority: 11")
    lost = azure_world.emulator.faults.lose_answers(host=HUB_HOST, method="PUT", path=r"^/configurations/",
                                                    times=1)
    with Engine(azure_world.env_dir) as engine:
        engine.apply()
    assert lost.injected == 1
    base = next(cfg for cid, cfg in owned(azure_world).items() if cid.startswith("iris-base-"))
    assert base["priority"] == 11
    with Engine(azure_world.env_dir) as engine:
        assert not engine.plan().has_changes


def test_a_deployment_delete_whose_answer_is_lost_is_done(azure_world: AzureWorld) -> None:
    with Engine(azure_world.env_dir) as engine:
        engine.apply()
    before = set(owned(azure_world))
    azure_world.edit("deployments.yaml", "MODEL_NAME: iris-classifier", "MODEL_NAME: iris")  # new content
    lost = azure_world.emulator.faults.lose_answers(host=HUB_HOST, method="DELETE", path=r"^/configurations/",
                                                    times=1)
    with Engine(azure_world.env_dir) as engine:
        engine.apply()  # a replace: create the new content, then delete the old
    assert lost.injected == 1
    assert len(set(owned(azure_world)) - before) == 1 and len(before - set(owned(azure_world))) == 1
    with Engine(azure_world.env_dir) as engine:
        assert not engine.plan().has_changes


def test_a_reset_inside_a_proxy_tunnel_counts_as_a_lost_answer_not_as_unsent() -> None:
    """urllib3 reports a connection reset inside an HTTPS proxy tunnel as a ProxyError; the request was sent,
    so a write may have happened and must not be repeated blindly."""
    from http.client import RemoteDisconnected

    from requests.exceptions import ProxyError
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    reset = ProxyError(MaxRetryError(None, "/", RemoteDisconnected("closed without response")))  # type: ignore[arg-type]
    reset.__context__ = reset.args[0]
    reset.args[0].reason = RemoteDisconnected("closed without response")
    assert errors.describe(reset).kind == errors.NO_ANSWER
    refused = ProxyError(MaxRetryError(None, "/", NewConnectionError(None, "refused")))  # type: ignore[arg-type]
    refused.__context__ = refused.args[0]
    refused.args[0].reason = NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert errors.describe(refused).kind == errors.NOT_SENT
