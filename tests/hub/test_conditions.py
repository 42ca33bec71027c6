from __future__ import annotations

import pytest

from reconciler.hub.conditions import ConditionError, device_ids_condition, matches, parse

TWIN = {"deviceId": "cam-1", "tags": {"environment": "prod", "site": "a", "floor": 3},
        "properties": {"reported": {"lastDesiredStatus": {"code": 200}}}}


@pytest.mark.parametrize(("condition", "expected"), [
    ("tags.environment='prod'", True),
    ("tags.environment='prod' AND (tags.site='a' OR tags.site='b')", True),
    ("tags.environment='prod' AND NOT deviceId='cam-1'", False),
    ("tags.floor >= 3 AND tags.floor < 4", True),
    ("tags.floor = '3'", False),  # types never compare equal
    ("tags.missing = 'x'", False),
    ("tags.missing != 'x'", False),  # a comparison with a missing field is false
    ("IS_DEFINED(tags.site)", True),
    ("properties.reported.lastDesiredStatus.code = 200", True),
    ("*", True),
    ("deviceId = 'operator''s'", False),
])
def test_matches(condition: str, expected: bool) -> None:
    assert matches(parse(condition), TWIN) is expected


@pytest.mark.parametrize(("condition", "message", "offset"), [
    ('tags.site="a"', "double quotes are not allowed", 10),
    ("tags.site IN ['a', 'b']", "IN is not supported", 10),
    ("(tags.site='a'", "expected ')'", 14),
    ("tags.site='a' AND", "ends too early", 17),
    ("labels.x='a'", "unknown field 'labels.x'", 0),
    ("properties.desired.x=1", "only reported properties", 0),
    ("", "empty", 0),
])
def test_refused_conditions_say_why_and_where(condition: str, message: str, offset: int) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(condition)
    assert message in str(caught.value)
    assert caught.value.offset == offset


def test_device_ids_become_an_or_chain_that_parses() -> None:
    condition = device_ids_condition(["a", "o'b"])
    assert condition == "deviceId='a' OR deviceId='o''b'"
    assert matches(parse(condition), {"deviceId": "o'b"})
