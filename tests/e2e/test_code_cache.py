"""The compiled methods of dataclasses kept between runs (``cli/codecache.py``): the classes are the same
with and without it, a second run compiles nothing, and a file it should not trust is not read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import codecache

# Run in a fresh interpreter: what the value classes do, and how many texts this run compiled.
PROBE = """
import dataclasses, sys
from reconciler.cli import codecache  # installs
from reconciler.model.specs import ResourceKey, Kind
cache = dataclasses.exec.__self__ if hasattr(dataclasses, "exec") else None
key = ResourceKey(Kind.MODEL, "m")
try:
    key.name = "x"
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
print(repr(key), key == ResourceKey(Kind.MODEL, "m"), hash(key) == hash(ResourceKey(Kind.MODEL, "m")), frozen,
      cache.added if cache else None)
"""


def _probe(cache: str) -> list[str]:
    env = {**os.environ, codecache.VARIABLE: cache}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_a_second_run_compiles_nothing_and_builds_the_same_classes(tmp_path: Path) -> None:
    first = _probe(str(tmp_path))
    [saved] = tmp_path.iterdir()
    assert saved.name == f"dataclasses.{sys.implementation.cache_tag}.marshal"
    second = _probe(str(tmp_path))
    off = _probe("")
    assert int(first[-1]) > 0
    assert second[-1] == "0"
    assert off[-1] == "None"  # an empty RECONCILER_CODE_CACHE turns it off
    assert first[:-1] == second[:-1] == off[:-1]
    assert first[:-1] == ["ResourceKey(kind=<Kind.MODEL:", "'Model'>,", "name='m')", "True", "True", "True"]


@pytest.mark.parametrize("damage", [b"", b"garbage", None])
def test_a_damaged_file_is_ignored(tmp_path: Path, damage: bytes | None) -> None:
    path = tmp_path / "code.marshal"
    cache = codecache.CodeCache(path)
    namespace: dict[str, object] = {}
    cache.exec("def f():\n    return 42\n", {}, namespace)
    cache.save()
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage is None else damage)
    again = codecache.CodeCache(path)
    assert again.codes == {}
    again.exec("def f():\n    return 42\n", {}, namespace)
    assert namespace["f"]() == 42  # type: ignore[operator]


def test_a_file_others_may_write_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "code.marshal"
    cache = codecache.CodeCache(path)
    cache.exec("x = 1\n", {}, {})
    cache.save()
    assert codecache.CodeCache(path).codes
    if os.name != "posix":
        pytest.skip("permission bits are POSIX")
    path.chmod(0o666)
    assert codecache.CodeCache(path).codes == {}


def test_code_of_another_python_version_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "code.marshal"
    cache = codecache.CodeCache(path)
    cache.exec("x = 1\n", {}, {})
    cache.save()
    path.write_bytes(b"\x00\x00\r\n" + path.read_bytes()[4:])
    assert codecache.CodeCache(path).codes == {}

