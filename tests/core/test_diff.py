"""reconciler.core.diff: field changes between JSON-like values, and their one-line summary."""

from __future__ import annotations

import random
from typing import Any

import pytest

from reconciler.core.diff import describe, field_changes
from reconciler.model.plan import FieldChange


def paths(changes: tuple[FieldChange, ...]) -> list[str]:
    return [change.path for change in changes]


@pytest.mark.parametrize("value", [
    {},
    {"priority": 10},
    {"tags": {"team": "vision", "site": "a"}, "ids": ["a", "b"], "nested": {"x": {"y": [1, {"z": None}]}}},
])
def test_equal_inputs_give_no_changes(value: dict[str, Any]) -> None:
    assert field_changes(value, value) == ()
    assert field_changes(value, {**value}) == ()


def test_a_changed_scalar_is_one_change_with_both_values() -> None:
    assert field_changes({"priority": 10, "name": "a"}, {"priority": 20, "name": "a"}) == (
        FieldChange("priority", 10, 20),)


def test_a_changed_leaf_of_nested_mappings_has_a_dotted_path() -> None:
    before = {"labels": {"app": "iris", "site": "a"}, "spec": {"edgeHub": {"ttl": 7200}}}
    after = {"labels": {"app": "iris", "site": "b"}, "spec": {"edgeHub": {"ttl": 60}}}
    assert field_changes(before, after) == (
        FieldChange("labels.site", "a", "b"),
        FieldChange("spec.edgeHub.ttl", 7200, 60),
    )


def test_added_and_removed_keys_have_none_on_the_absent_side() -> None:
    changes = field_changes({"tags": {"old": "1", "kept": "k"}}, {"tags": {"kept": "k", "new": "2"}})
    assert changes == (FieldChange("tags.new", None, "2"), FieldChange("tags.old", "1", None))


def test_a_whole_mapping_added_is_split_into_its_leaves() -> None:
    """DeepDiff reports ``{} -> {...}`` as one change of the container; the plan shows each leaf."""
    changes = field_changes({}, {"tags": {"team": "vision", "owner": {"name": "ml"}}})
    assert changes == (FieldChange("tags.owner.name", None, "ml"), FieldChange("tags.team", None, "vision"))
    removed = field_changes({"tags": {"team": "vision"}}, {})
    assert removed == (FieldChange("tags.team", "vision", None),)


def test_an_absent_mapping_and_an_empty_one_are_the_same() -> None:
    assert field_changes({"labels": {}}, {}) == ()
    assert field_changes({}, {"metrics": {}}) == ()


def test_list_items_are_compared_by_index() -> None:
    assert field_changes({"ids": ["a", "b"]}, {"ids": ["a", "c"]}) == (FieldChange("ids[1]", "b", "c"),)
    assert field_changes({"ids": ["a"]}, {"ids": ["a", "c"]}) == (FieldChange("ids[1]", None, "c"),)
    assert field_changes({"ids": ["a", "b"]}, {"ids": ["a"]}) == (FieldChange("ids[1]", "b", None),)
    assert paths(field_changes({"ids": ["a", "b"]}, {"ids": ["b", "a"]})) == ["ids[0]", "ids[1]"]


def test_mappings_inside_lists_get_index_then_key_paths() -> None:
    before = {"bindings": [{"HostPort": "5001"}]}
    after = {"bindings": [{"HostPort": "8080"}]}
    assert field_changes(before, after) == (FieldChange("bindings[0].HostPort", "5001", "8080"),)


def test_a_list_added_whole_stays_one_change() -> None:
    assert field_changes({}, {"deviceIds": ["cam-1", "cam-2"]}) == (
        FieldChange("deviceIds", None, ["cam-1", "cam-2"]),)


def test_a_changed_type_is_a_change() -> None:
    assert field_changes({"port": 5001}, {"port": "5001"}) == (FieldChange("port", 5001, "5001"),)
    assert field_changes({"a": {"b": 1}}, {"a": 5}) == (FieldChange("a", {"b": 1}, 5),)


def test_keys_with_dots_are_joined_as_they_are() -> None:
    """Manifest keys such as ``properties.desired`` read naturally in a dotted path."""
    before = {"$edgeAgent": {"properties.desired": {"modules": {"scorer": {"status": "running"}}}}}
    after = {"$edgeAgent": {"properties.desired": {"modules": {"scorer": {"status": "stopped"}}}}}
    assert paths(field_changes(before, after)) == ["$edgeAgent.properties.desired.modules.scorer.status"]


def test_prefix_is_put_in_front_of_every_path() -> None:
    changes = field_changes({"a": {"b": 1}, "c": 1}, {"a": {"b": 2}, "c": 2}, prefix="content.")
    assert paths(changes) == ["content.a.b", "content.c"]


def test_changes_are_sorted_by_path() -> None:
    before = {"z": 1, "a": {"y": 1, "b": 1}, "m": 1}
    after = {"z": 2, "a": {"y": 2, "b": 2}, "m": 2}
    assert paths(field_changes(before, after)) == ["a.b", "a.y", "m", "z"]


def test_describe_one_change() -> None:
    assert describe((FieldChange("priority", 10, 20),)) == "priority 10 -> 20"
    assert describe((FieldChange("tags.team", None, "vision"),)) == "tags.team added ('vision')"
    assert describe((FieldChange("tags.team", "vision", None),)) == "tags.team removed"
    assert describe((FieldChange("labels", None, {"a": "b"}),)) == "labels added ({...})"
    assert describe((FieldChange("ids", ["a"], ["b"]),)) == "ids [...] -> [...]"


def test_describe_shortens_long_values_to_40_characters() -> None:
    reason = describe((FieldChange("description", "x" * 100, "short"),))
    assert reason == f"description '{'x' * 36}... -> 'short'"


def test_describe_several_changes_names_at_most_three_paths() -> None:
    two = (FieldChange("a", 1, 2), FieldChange("b", 1, 2))
    assert describe(two) == "a, b changed"
    five = tuple(FieldChange(name, 1, 2) for name in "abcde")
    assert describe(five) == "a, b, c and 2 more changed"
    assert describe(five, limit=4) == "a, b, c, d and 1 more changed"


def test_describe_nothing() -> None:
    assert describe(()) == "no field changes"


# Pairs whose canonical JSON is equal or not for every reason the shortcut in ``diff._same`` must respect.
SAME_OR_NOT = [
    ({"a": 1}, {"a": 1}), ({"a": 1}, {"a": 1.0}), ({"a": 1}, {"a": True}), ({"a": 0.0}, {"a": -0.0}),
    ({"a": float("nan")}, {"a": float("nan")}), ({"a": [1, 2]}, {"a": (1, 2)}), ({"a": [1, 2]}, {"a": [2, 1]}),
    ({1: "x"}, {"1": "x"}), ({1: "x"}, {True: "x"}), ({"a": None}, {}), ({"a": {"b": [{"c": "d"}]}},
                                                                        {"a": {"b": [{"c": "d"}]}}),
    ({"a": {"b": [{"c": "d"}]}}, {"a": {"b": [{"c": "e"}]}}), ({"a": "1"}, {"a": 1}),
    ({"k": 1, "j": 2}, {"j": 2, "k": 1}),
    ({"a": {1, 2}}, {"a": {1, 2}}), ({"a": 10**20}, {"a": 10**20}), ({"a": 1e20}, {"a": 10**20}),
]


@pytest.mark.parametrize(("before", "after"), SAME_OR_NOT)
def test_the_shortcut_for_equal_sides_agrees_with_canonical_json(before: object, after: object) -> None:
    """``_same`` answers equal plain values without serialising them: exactly when their canonical JSON is equal."""
    import json

    from reconciler.core.diff import _same

    try:
        expected = json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True)
    except (TypeError, ValueError):
        expected = False
    assert _same(before, after) is expected
    assert _same(after, before) is expected


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.35:
        return {rng.choice(KEYS): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return rng.choice(LEAVES)


def _mutated(rng: random.Random, value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict) and rng.random() < 0.8:
        changed = dict(value)
        for key in list(changed):
            roll = rng.random()
            if roll < 0.15:
                del changed[key]
            elif roll < 0.6:
                changed[key] = _mutated(rng, changed[key], depth + 1)
        if rng.random() < 0.3:
            changed[rng.choice(KEYS)] = _random_value(rng, depth + 1)
        return changed
    return _random_value(rng, depth) if rng.random() < 0.5 else value


KEYS = ["a", "b", "c", "image", "env", "__private", "settings", "0"]
LEAVES: list[Any] = ["", "x", "y", "1", 0, 1, 2, True, False, None, 1.0, 0.5, [1, 2], [], {}]


@pytest.mark.parametrize("seed", range(40))
def test_changes_found_without_deepdiff_are_the_ones_deepdiff_reports(seed: int) -> None:
    """``field_changes`` explains plain mappings itself and leaves the rest to DeepDiff: on generated pairs
    (lists, floats, private keys and mappings with few shared keys among them) the result is the same."""
    from reconciler.core import diff

    rng = random.Random(seed)
    for _ in range(50):
        before = {key: _random_value(rng, 1) for key in rng.sample(KEYS, rng.randint(1, 5))}
        after = _mutated(rng, before)
        expected = []
        if not diff._same(before, after):
            for reported, old, new in diff._deepdiff_differences(before, after):
                expected += [FieldChange(diff._dotted(path), leaf_old, leaf_new)
                             for path, leaf_old, leaf_new in diff._leaves(reported, old, new)]
        assert field_changes(before, after) == tuple(sorted(expected, key=lambda change: change.path)), (before, after)


def test_a_plain_change_does_not_import_deepdiff() -> None:
    import subprocess
    import sys

    probe = ("import sys\nfrom reconciler.core.diff import field_changes\n"
             "changes = field_changes({'a': {'b': 'x', 'c': 1}, 'd': True}, {'a': {'b': 'y', 'c': 1}, 'e': None})\n"
             "print([(c.path, c.before, c.after) for c in changes], 'deepdiff' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[('a.b', 'x', 'y'), ('d', True, None), ('e', None, None)] False"
