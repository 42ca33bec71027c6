"""IoT Hub's deployment rules on hand-made rows: priority, ties, layers, shadowing, health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.hub.conditions import parse, uses_device_id
from reconciler.hub.manifest import modules as manifest_modules
from reconciler.model.state import DeploymentHealth
from reconciler.providers.local.rows import DeploymentRow, DeviceRow
from reconciler.providers.local.simulator import Fleet, count_matching

T0 = "2026-01-01T00:00:00.000000+00:00"
T1 = "2026-01-02T00:00:00.000000+00:00"
_seq = iter(range(1, 1000))


def image(name: str) -> dict[str, Any]:
    return {"type": "docker", "settings": {"image": name, "createOptions": "{}"}}


def base(id_: str, condition: str, priority: int, modules: dict[str, str], created: str = T0,
         seq: int | None = None) -> DeploymentRow:
    content = {"$edgeAgent": {"properties.desired": {"modules": {m: image(i) for m, i in modules.items()}}}}
    return DeploymentRow(id_, id_, None, None, content, condition, priority, {}, {}, False, created,
                         seq if seq is not None else next(_seq))


def layer(id_: str, condition: str, priority: int, modules: dict[str, str], created: str = T0) -> DeploymentRow:
    content = {"$edgeAgent": {f"properties.desired.modules.{m}": image(i) for m, i in modules.items()}}
    return DeploymentRow(id_, id_, None, None, content, condition, priority, {}, {}, True, created, next(_seq))


def device(id_: str, failing: bool = False, **tags: Any) -> DeviceRow:
    return DeviceRow(id_, tags, {}, failing)


def modules(hub: Fleet, row: DeviceRow) -> dict[str, tuple[str, str]]:
    """module -> (deployment, image)"""
    return {name: (deployment, definition["settings"]["image"])
            for name, (deployment, definition) in hub.effective_modules(row).items()}


def test_the_highest_priority_base_deployment_applies_alone() -> None:
    hub = Fleet([base("low", "tags.site='a'", 5, {"app": "mcr.io/app:1", "extra": "mcr.io/extra:1"}),
               base("high", "tags.site='a'", 10, {"app": "mcr.io/app:2"})])
    assert modules(hub, device("d", site="a")) == {"app": ("high", "mcr.io/app:2")}  # bases never merge
    assert modules(hub, device("d", site="b")) == {}


def test_ties_go_to_the_newest_creation_then_to_the_creation_order() -> None:
    older = base("older", "*", 10, {"app": "mcr.io/app:old"}, created=T0)
    newer = base("newer", "*", 10, {"app": "mcr.io/app:new"}, created=T1)
    assert modules(Fleet([newer, older]), device("d")) == {"app": ("newer", "mcr.io/app:new")}
    first = base("first", "*", 10, {"app": "mcr.io/app:1"}, created=T0, seq=500)
    second = base("second", "*", 10, {"app": "mcr.io/app:2"}, created=T0, seq=501)
    assert modules(Fleet([second, first]), device("d")) == {"app": ("second", "mcr.io/app:2")}


def test_layers_above_the_base_merge_and_the_higher_layer_wins_a_module() -> None:
    hub = Fleet([
        base("base", "*", 10, {"app": "mcr.io/app:1", "agent": "mcr.io/agent:1"}),
        layer("mid", "*", 20, {"app": "mcr.io/app:2", "sensor": "mcr.io/sensor:1"}),
        layer("top", "tags.site='a'", 30, {"sensor": "mcr.io/sensor:2"}),
        layer("below", "*", 10, {"debug": "mcr.io/debug:1"}),  # not higher than the base: not applied
    ])
    assert modules(hub, device("d", site="a")) == {
        "agent": ("base", "mcr.io/agent:1"),
        "app": ("mid", "mcr.io/app:2"),
        "sensor": ("top", "mcr.io/sensor:2"),
    }
    assert modules(hub, device("e", site="b"))["sensor"] == ("mid", "mcr.io/sensor:1")


def test_layers_apply_without_a_base() -> None:
    hub = Fleet([layer("one", "*", 1, {"a": "mcr.io/a:1"}), layer("two", "*", 2, {"b": "mcr.io/b:1"})])
    assert modules(hub, device("d")) == {"a": ("one", "mcr.io/a:1"), "b": ("two", "mcr.io/b:1")}


def test_health_counts_targeted_applied_and_who_shadows() -> None:
    hub = Fleet([
        base("fleet", "tags.env='prod'", 10, {"app": "mcr.io/app:1"}),
        base("hotfix", "tags.site='b'", 90, {"app": "mcr.io/app:2"}),
        layer("low-layer", "tags.env='prod'", 5, {"x": "mcr.io/x:1"}),
        layer("layer", "tags.env='prod'", 50, {"y": "mcr.io/y:1"}),
    ])
    devices = [device("a1", env="prod", site="a"), device("a2", env="prod", site="a"),
               device("b1", env="prod", site="b"), device("c1", env="dev", site="c")]
    health = hub.health(devices, images=set())
    assert health["fleet"] == DeploymentHealth(3, 2, 2, 0, ("hotfix",))
    assert health["hotfix"] == DeploymentHealth(1, 1, 1, 0, ())
    assert health["low-layer"] == DeploymentHealth(3, 0, 0, 0, ("fleet", "hotfix"))
    assert health["layer"] == DeploymentHealth(3, 2, 2, 0, ("hotfix",))  # b1's base outranks it


def test_a_failing_device_or_a_missing_local_image_fails_the_rollout() -> None:
    hub = Fleet([base("built", "*", 10, {"app": "localhost/app:abc"}),
               layer("missing", "*", 20, {"side": "localhost/side:def", "ext": "mcr.io/ext:1"})])
    devices = [device("ok"), device("broken", failing=True)]
    health = hub.health(devices, images={"localhost/app:abc"})
    assert health["built"] == DeploymentHealth(2, 2, 1, 1)
    assert health["missing"] == DeploymentHealth(2, 2, 0, 2)


def test_a_condition_on_device_ids_is_evaluated_per_device() -> None:
    hub = Fleet([base("fleet", "tags.site='a'", 10, {"app": "mcr.io/app:1"}),
               base("one", "deviceId='a2' OR deviceId='a3'", 20, {"app": "mcr.io/app:2"})])
    same_tags = [device(f"a{i}", site="a") for i in range(1, 4)]
    assert [modules(hub, d)["app"][0] for d in same_tags] == ["fleet", "one", "one"]
    health = hub.health(same_tags, images=set())
    assert health["fleet"] == DeploymentHealth(3, 1, 1, 0, ("one",))
    assert uses_device_id(parse("NOT (tags.x = 1 AND deviceId = 'x')"))
    assert not uses_device_id(parse("tags.deviceId = 'x' OR IS_DEFINED(properties.reported.v)"))


def test_reported_properties_and_invalid_conditions() -> None:
    hub = Fleet([base("new-firmware", "properties.reported.firmware >= 2", 10, {"app": "mcr.io/app:1"}),
               base("broken", "tags.site = \"a\"", 99, {"app": "mcr.io/app:2"})])
    updated = DeviceRow("d", {"site": "a"}, {"firmware": 3}, False)
    assert modules(hub, updated) == {"app": ("new-firmware", "mcr.io/app:1")}
    assert modules(hub, DeviceRow("e", {"site": "a"}, {"firmware": 1}, False)) == {}
    assert count_matching(parse("properties.reported.firmware > 2"), [updated]) == 1


def test_layered_paths_below_a_module_are_not_module_definitions() -> None:
    row = layer("l", "*", 1, {"a": "mcr.io/a:1"})
    row.content["$edgeAgent"]["properties.desired.modules.a.env"] = {"X": {"value": "1"}}
    assert list(manifest_modules(row.content)) == ["a"]


def test_counts_by_groups_of_devices_agree_with_every_device_and_follow_changes(tmp_path: Path) -> None:
    """``Simulator.count`` evaluates a condition without deviceId once per distinct (tags, reported): the
    counts must be those of evaluating every device, also after devices are tagged, report or go away."""
    from reconciler.providers.local.simulator import Simulator
    from reconciler.providers.local.store import Store

    store = Store(tmp_path)
    try:
        simulator = Simulator(store)
        simulator.add([(f"dev{i:03d}", {"site": f"s{i % 4}", "ring": i % 3}) for i in range(60)])
        conditions = ["tags.site='s1'", "tags.site='s1' AND tags.ring=2", "NOT tags.site='s0'", "*",
                      "IS_DEFINED(properties.reported.fw)", "properties.reported.fw >= 2",
                      "deviceId='dev007' OR tags.site='s3'", "tags.ring=2.0", "tags.nothing='x'"]

        def check() -> None:
            everyone = store.devices()
            for text in conditions:
                condition = parse(text)
                assert simulator.count(condition) == count_matching(condition, everyone), text

        check()
        simulator.tag("dev001", {"site": "s0"})
        check()
        simulator.report("dev002", {}, {"fw": 3})
        simulator.report("dev003", {}, {"fw": 1})
        check()
        simulator.remove("dev004")
        check()
        assert simulator.count(parse("properties.reported.fw >= 2")) == 1
    finally:
        store.close()
