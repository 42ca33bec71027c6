"""The local store's JSON columns are decoded by the C scanner directly (``store._loads``): the same values and
the same errors as ``json.loads`` for every text, not only the compact JSON the store writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.providers.local.store import _dump, _loads

TEXTS = ['{}', '[]', '"x"', '1', '-2.5e3', 'null', 'true', '{"a":[1,2.5,null,true],"b":{"c":"\\u00e9"}}',
         ' {}', '{} ', '\n[1]\n', '', ' ', '{', '{}x', '[1]]', 'nan', 'NaN', '{"a":1,}', "{'a': 1}"]


def _outcome(decode: Any, text: Any) -> tuple[str, Any]:
    try:
        return "value", decode(text)
    except (ValueError, TypeError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("text", [*TEXTS, None, b"{}"])
def test_decodes_as_json_loads_does(text: Any) -> None:
    assert repr(_outcome(_loads, text)) == repr(_outcome(json.loads, text))


def test_what_the_store_writes_comes_back() -> None:
    value = {"tags": {"b": "2", "a": "é"}, "files": {"m/w.bin": "0" * 64}, "n": [1, 2.5, None, True]}
    assert _loads(_dump(value)) == value
