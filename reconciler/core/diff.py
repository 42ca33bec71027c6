"""Field-level differences between two JSON-like values, and one-line reasons.

Both sides must already be normalised (server-set fields and ownership marks removed):
whatever differs here is shown to the user.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.model.plan import FieldChange


def _dotted(path: list[Any]) -> str:
    return ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in path).replace(".[", "[")


def _plain(value: Any) -> Any:
    from deepdiff.helper import NotPresent

    return None if isinstance(value, NotPresent) else value


def _same(before: Any, after: Any) -> bool:
    """True exactly when DeepDiff would find no difference: same keys and values, same JSON types
    (``1`` and ``1.0``, ``1`` and ``True`` differ). Values JSON cannot sort are left to DeepDiff.

    The canonical JSON of both sides decides; ``_identical`` answers first for the common case, equal
    plain values of the same types throughout, whose canonical JSON is equal for sure (a no-op plan
    compared 1,100 resources with 2,200 ``json.dumps``)."""
    if _identical(before, after):
        return True
    try:
        return json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True)
    except (TypeError, ValueError):
        return False


def _identical(before: Any, after: Any) -> bool:
    """Equal, with the same JSON types at every level, string keys only and floats equal as JSON writes them
    (``-0.0`` is not ``0.0``). False also when unsure (other types): ``_same`` then compares the JSON."""
    kind = type(before)
    if kind is not type(after):
        return False
    if kind is dict:
        if len(before) != len(after):
            return False
        # String keys found on both sides, as many on each: the same keys (a string never equals another type).
        for key, value in before.items():
            if type(key) is not str or key not in after or not _identical(value, after[key]):
                return False
        return True
    if kind is list or kind is tuple:
        return len(before) == len(after) and all(_identical(old, new) for old, new in zip(before, after, strict=True))
    if kind is float:
        return repr(before) == repr(after)
    return (kind is str or kind is int or kind is bool or before is None) and before == after


def _leaves(path: list[Any], before: Any, after: Any) -> list[tuple[list[Any], Any, Any]]:
    """Split a change of a whole mapping into changes of its leaves.

    DeepDiff reports ``{} -> {"a": 1}`` as one change of the container; people want to read
    ``a added``. Lists stay whole: their items have no names to show."""
    mappings = (isinstance(before, dict) or before is None) and (isinstance(after, dict) or after is None)
    if not mappings or (before is None and after is None):
        return [(path, before, after)]
    old, new = before or {}, after or {}
    if not old and not new:
        return []  # an absent mapping and an empty one mean the same
    return [leaf for key in sorted(set(old) | set(new), key=str) if old.get(key) != new.get(key)
            for leaf in _leaves([*path, key], old.get(key), new.get(key))]


def field_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> tuple[FieldChange, ...]:
    """Every leaf that differs, with dotted paths, sorted by path. Equal sides (most resources, in most
    plans) are told apart by their canonical JSON; deepdiff is loaded and run only to explain a real
    difference."""
    if _same(before, after):
        return ()
    found: list[tuple[list[Any], Any, Any]] = []
    try:
        _plain_differences([], before, after, found)
    except _Unsure:
        found = _deepdiff_differences(before, after)
    changes = []
    for reported, old, new in found:
        for path, leaf_old, leaf_new in _leaves(reported, old, new):
            dotted = _dotted(path)
            changes.append(FieldChange(f"{prefix}{dotted}" if dotted else prefix.rstrip("."), leaf_old, leaf_new))
    return tuple(sorted(changes, key=lambda change: change.path))


def _deepdiff_differences(before: Any, after: Any) -> list[tuple[list[Any], Any, Any]]:
    """What DeepDiff reports (path, before, after; ``None`` for a side where the key is absent)."""
    from deepdiff import DeepDiff

    diff = DeepDiff(before, after, view="tree", verbose_level=2)
    return [(level.path(output_format="list"), _plain(level.t1), _plain(level.t2))
            for levels in diff.values() for level in levels]


class _Unsure(Exception):
    """Values ``_plain_differences`` does not decide as DeepDiff would: DeepDiff decides."""


_PLAIN_TYPES = (str, int, bool, type(None), dict)


def _plain_differences(path: list[Any], before: Any, after: Any, found: list[tuple[list[Any], Any, Any]]) -> None:
    """DeepDiff's report for mappings with string keys and str, int, bool or None leaves, without importing it
    (about 0.1 s, the largest cost of a plan with a few changes) or building its tree. Anything else raises
    ``_Unsure``: lists and floats, keys starting with ``__`` (DeepDiff skips them as private), and mappings
    that share fewer than a third of their keys (DeepDiff 8 reports those whole, earlier versions key by key).
    A parametrised test compares both on generated values."""
    if before is after:
        return
    kind = type(before)
    if kind not in _PLAIN_TYPES or type(after) not in _PLAIN_TYPES:
        raise _Unsure
    if kind is not type(after):
        found.append((path, before, after))  # DeepDiff's type_changes, 1 -> True included
        return
    if kind is not dict:
        if before != after:
            found.append((path, before, after))
        return
    if any(type(key) is not str or key.startswith("__") for key in (*before, *after)):
        raise _Unsure
    shared = before.keys() & after.keys()
    union = len(before.keys() | after.keys())
    if union > 1 and len(shared) / union < 0.33:
        raise _Unsure
    found.extend(([*path, key], None, after[key]) for key in after if key not in before)
    found.extend(([*path, key], before[key], None) for key in before if key not in after)
    for key in shared:
        _plain_differences([*path, key], before[key], after[key], found)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else ("{...}" if isinstance(value, dict) else "[...]")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(changes: tuple[FieldChange, ...], limit: int = 3) -> str:
    """A one-line summary: ``priority 10 -> 20`` for one field, else the changed paths."""
    if not changes:
        return "no field changes"
    if len(changes) == 1:
        change = changes[0]
        if change.before is None:
            return f"{change.path} added ({_short(change.after)})"
        if change.after is None:
            return f"{change.path} removed"
        return f"{change.path} {_short(change.before)} -> {_short(change.after)}"
    names = [change.path for change in changes[:limit]]
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return f"{', '.join(names)}{more} changed"
