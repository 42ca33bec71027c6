"""The fingerprint memo (``spec.memo``): after a cached load, unchanged models and images keep the
fingerprints of the last run without being fingerprinted again; any changed file they read is fingerprinted
afresh, and the fingerprints are always those a full computation gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.engine import Engine
from reconciler.model.specs import Fingerprints
from reconciler.spec import memo
from reconciler.spec.fingerprints import HashCache, compute_fingerprints
from reconciler.spec.loader import load_environment
from tests.spec.support import ENVIRONMENT, SCORE, use_own_cache


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_own_cache(tmp_path, monkeypatch)
    monkeypatch.setattr(memo, "RACY_SECONDS", -60.0)


@pytest.fixture
def fingerprinted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models fingerprinted afresh (not taken from the memo), in order."""
    names: list[str] = []
    original = memo.model_fingerprint

    def counting(spec, *args, **kwargs):  # type: ignore[no-untyped-def]
        names.append(spec.name)
        return original(spec, *args, **kwargs)

    monkeypatch.setattr(memo, "model_fingerprint", counting)
    return names


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    for name in ("a", "b"):
        (repo / "models" / name).mkdir(parents=True)
        (repo / "models" / name / "weights.bin").write_bytes(b"weights of " + name.encode())
    (repo / "code").mkdir()
    (repo / "code" / "score.py").write_text(SCORE)
    (repo / "code" / "conda.yaml").write_text("dependencies:\n  - python=3.10\n")
    env = repo / "environments" / "dev"
    env.mkdir(parents=True)
    (env / "environment.yaml").write_text(ENVIRONMENT)
    (env / "specs.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Model\nmetadata: {name: a}\nspec: {path: ../../models/a}\n---\n"
        "apiVersion: reconciler/v1\nkind: Model\nmetadata: {name: b}\nspec: {path: ../../models/b}\n---\n"
        "apiVersion: reconciler/v1\nkind: Image\nmetadata: {name: img}\n"
        "spec: {entryScript: ../../code/score.py, condaFile: ../../code/conda.yaml, models: [a, b]}\n")
    return env


def _fingerprints(env: Path) -> Fingerprints:
    with Engine(env) as engine:
        return engine.fingerprints()


def _afresh(env: Path) -> Fingerprints:
    """What a full computation gives, with an empty digest cache."""
    return compute_fingerprints(load_environment(env), HashCache())


def test_an_unchanged_environment_takes_its_fingerprints_from_the_memo(tmp_path: Path,
                                                                       fingerprinted: list[str]) -> None:
    env = _repo(tmp_path)
    first = _fingerprints(env)
    assert fingerprinted == ["a", "b"]
    assert _fingerprints(env) == first == _afresh(env)
    assert fingerprinted == ["a", "b"]  # nothing fingerprinted the second time
    assert (tmp_path / "cache" / memo.MEMO_FILE).is_file()


def test_a_changed_model_file_after_a_cached_load_changes_the_fingerprint(tmp_path: Path,
                                                                          fingerprinted: list[str]) -> None:
    env = _repo(tmp_path)
    first = _fingerprints(env)
    _fingerprints(env)
    weights = tmp_path / "repo" / "models" / "a" / "weights.bin"
    weights.write_bytes(b"new weights of a")  # in place: the folder's listing (and the verdict) is unchanged
    changed = _fingerprints(env)
    assert changed.models["a"] != first.models["a"]
    assert changed.models["b"] == first.models["b"]
    assert changed.images["img"] != first.images["img"]  # its model changed
    assert changed == _afresh(env)
    assert fingerprinted == ["a", "b", "a"]  # only the changed model again
    assert _fingerprints(env) == changed
    assert fingerprinted == ["a", "b", "a"]


def test_a_same_size_rewrite_is_seen(tmp_path: Path) -> None:
    env = _repo(tmp_path)
    first = _fingerprints(env)
    weights = tmp_path / "repo" / "models" / "b" / "weights.bin"
    before = weights.stat()
    weights.write_bytes(b"WEIGHTS OF b")  # the same size, within a nanosecond of the old mtime
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    changed = _fingerprints(env)
    assert changed.models["b"] != first.models["b"]
    assert changed == _afresh(env)


def test_a_touched_but_identical_file_changes_nothing(tmp_path: Path, fingerprinted: list[str]) -> None:
    env = _repo(tmp_path)
    first = _fingerprints(env)
    weights = tmp_path / "repo" / "models" / "a" / "weights.bin"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 5_000_000_000))
    assert _fingerprints(env) == first
    assert fingerprinted == ["a", "b", "a"]  # its signature changed: looked at again, same fingerprint
    assert _fingerprints(env) == first
    assert fingerprinted == ["a", "b", "a"]


def test_a_file_added_to_a_model_folder_changes_the_fingerprint(tmp_path: Path) -> None:
    env = _repo(tmp_path)
    first = _fingerprints(env)
    (tmp_path / "repo" / "models" / "a" / "extra.txt").write_text("x")
    changed = _fingerprints(env)
    assert changed.models["a"] != first.models["a"]
    assert changed == _afresh(env)


def test_a_changed_scoring_script_changes_the_image_fingerprint(tmp_path: Path) -> None:
    env = _repo(tmp_path)
    first = _fingerprints(env)
    (tmp_path / "repo" / "code" / "score.py").write_text(SCORE + "\n# v2\n")
    changed = _fingerprints(env)
    assert changed.images["img"] != first.images["img"]
    assert changed.models == first.models
    assert changed == _afresh(env)


def test_a_damaged_memo_is_ignored(tmp_path: Path, fingerprinted: list[str]) -> None:
    env = _repo(tmp_path)
    first = _fingerprints(env)
    (tmp_path / "cache" / memo.MEMO_FILE).write_text('{"format": 1, "verdict": [')
    assert _fingerprints(env) == first
    assert fingerprinted == ["a", "b", "a", "b"]


def test_files_changed_just_before_the_run_are_not_memoized(tmp_path: Path, fingerprinted: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "RACY_SECONDS", 3600.0)
    env = _repo(tmp_path)
    first = _fingerprints(env)
    assert _fingerprints(env) == first
    assert fingerprinted == ["a", "b", "a", "b"]
