"""The importer's pure parts: names, selection, and the refusal of what cannot be a valid spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ReconcilerError
from reconciler.model.state import LiveDeployment, Snapshot
from reconciler.spec.importer import convert, select, spec_name

BASE = {"$edgeAgent": {"properties.desired": {"modules": {}}}, "$edgeHub": {"properties.desired": {"routes": {}}}}


def live(deployment_id: str, owner: str | None = None, condition: str = "tags.a='1'") -> LiveDeployment:
    return LiveDeployment(id=deployment_id, name=deployment_id, owner=owner, content_hash=None, content=BASE,
                          target_condition=condition, priority=1, labels={}, metrics={}, layered=False,
                          created="2026-01-01T00:00:00Z")


def snapshot(*deployments: LiveDeployment) -> Snapshot:
    return Snapshot("dev", "localhost", (), (), deployments, {})


@pytest.mark.parametrize(("deployment_id", "taken", "name"), [
    ("sensors-2024", set(), "sensors-2024"),
    ("Sensors_Fleet:v2", set(), "sensors-fleet-v2"),
    ("--edge--", set(), "edge"),
    ("@@@", set(), "imported"),
    ("base", {"base", "base-2"}, "base-3"),
])
def test_spec_names(deployment_id: str, taken: set[str], name: str) -> None:
    assert spec_name(deployment_id, taken) == name


def test_select_takes_unmanaged_deployments_by_glob() -> None:
    found = snapshot(live("a-1"), live("a-2"), live("b-1"), live("a-9", owner="dev"))
    assert [d.id for d in select(found, None)] == ["a-1", "a-2", "b-1"]
    assert [d.id for d in select(found, "a-*")] == ["a-1", "a-2"]
    with pytest.raises(ReconcilerError, match=r"--id a-9: a-9 is managed by edge-reconciler already"):
        select(found, "a-9")
    with pytest.raises(ReconcilerError, match=r"no unmanaged deployment in the hub matches \(unmanaged "
                                              r"deployments: a-1, a-2, b-1\); nothing was written"):
        select(found, "c*")


def test_a_deployment_that_cannot_be_a_valid_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReconcilerError) as raised:
        convert(live("quoted", condition='tags.site="a"'), "quoted", {}, tmp_path)
    assert str(raised.value).startswith("deployment quoted cannot be written as a valid Deployment spec "
                                        "(spec.targetCondition: ")
    assert str(raised.value).endswith("nothing was written. Leave it out with --id, or fix it in the hub first")
