"""The scoring environment's Python (the one the conda file pins) and the pruning of the behaviour caches
(``reconciler.behaviour.gc``, ``reconciler gc``), through the CLI."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from reconciler.behaviour.venv import COMPLETE, environment_key
from tests.behaviour.conftest import RUNNING_PYTHON
from tests.e2e.helpers import Workspace

RUNNING_FULL = ".".join(str(part) for part in sys.version_info[:3])


def test_the_environment_runs_the_python_the_conda_file_pins_and_its_version_is_in_the_key(
        iris: Workspace, venv_cache: Path) -> None:
    result = iris.run("test", iris.env)
    assert result.code == 0, result.err
    conda = iris.root / "models" / "iris" / "conda.yaml"
    assert f"  - python={RUNNING_PYTHON}\n" in conda.read_text()
    folder = venv_cache / environment_key(conda.read_bytes(), RUNNING_PYTHON)
    recorded = json.loads((folder / COMPLETE).read_text())
    assert recorded["python"].startswith(f"{RUNNING_PYTHON}.")
    assert environment_key(conda.read_bytes(), RUNNING_PYTHON) != environment_key(conda.read_bytes(), "3.9")


def test_a_python_uv_cannot_find_or_fetch_is_named_with_the_override(
        iris: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")  # the error path needs no network
    iris.edit("models/iris/conda.yaml", f"  - python={RUNNING_PYTHON}\n", "  - python=3.4\n")
    result = iris.run("test", iris.env)
    assert result.code == 1
    [error] = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert error.startswith(
        "error: models/iris/conda.yaml asks for Python 3.4, and uv can neither find nor fetch it "
        "(`uv venv --python 3.4` exited with "), result.err
    assert error.endswith(
        "): install it (`uv python install 3.4`), or pass --python PATH (a Python 3.4 with "
        "azureml-inference-server-http)")
    assert "Traceback" not in result.err


def test_without_uv_only_the_running_python_of_the_pinned_version_is_used(
        iris: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_UV", "none")
    iris.edit("models/iris/conda.yaml", f"  - python={RUNNING_PYTHON}\n", "  - python=3.4\n")
    result = iris.run("test", iris.env)
    assert result.code == 1
    assert result.err == (
        f"error: models/iris/conda.yaml asks for Python 3.4, and this is Python {RUNNING_FULL} without uv: install "
        "uv (`pip install uv`; it finds or fetches Python 3.4), run the reconciler on Python 3.4, or pass "
        "--python PATH (a Python 3.4 with azureml-inference-server-http)\n")


def fake_environment(root: Path, name: str, age_seconds: float) -> Path:
    folder = root / name
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_bytes(b"x" * 1000)
    (folder / COMPLETE).write_text("{}\n")
    stamp = time.time() - age_seconds
    os.utime(folder / COMPLETE, (stamp, stamp))
    return folder


def fake_result(folder: Path, name: str, age_seconds: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text("{}")
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_gc_keeps_what_was_used_last_and_removes_debris_of_killed_builds(
        iris: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venvs = tmp_path / "venvs"
    monkeypatch.setenv("RECONCILER_VENV_CACHE", str(venvs))
    oldest, older, newest = (fake_environment(venvs, name, age) for name, age in
                             (("a" * 20, 300), ("b" * 20, 200), ("c" * 20, 100)))
    debris = fake_environment(venvs, ".dddd.killed", 10 * 24 * 3600)
    (debris / COMPLETE).unlink()
    os.utime(debris, (time.time() - 10 * 24 * 3600,) * 2)
    building = venvs / ".eeee.building"
    building.mkdir()  # another run's build in progress: young, kept
    results = iris.root / ".reconciler" / "local" / "behaviour"
    kept_result = fake_result(results, "new", 10)
    old_results = [fake_result(results, name, age) for name, age in (("old", 1000), ("older", 2000))]

    result = iris.run("gc", iris.env, "--keep-venvs", "1", "--keep-results", "1")
    assert result.code == 0, result.err
    assert result.out == (f"Removed 3 virtualenvs (0.0 MB) from {venvs}, and 2 sample results (0.0 MB) from "
                          f"{results}.\n")
    assert sorted(p.name for p in venvs.iterdir()) == sorted([newest.name, building.name])
    assert not oldest.exists() and not older.exists()
    assert kept_result.exists() and not any(p.exists() for p in old_results)

    again = iris.run("gc")
    assert again.out == f"Removed 0 virtualenvs (0.0 MB) from {venvs}.\n"
    with pytest.raises(SystemExit) as refused:
        iris.run("gc", "--keep-venvs", "-1")
    assert refused.value.code == 2
    assert "argument --keep-venvs: '-1' is not a whole number (0 or more)" in iris.capsys.readouterr().err


def test_a_run_prunes_the_caches_by_last_use_and_keeps_what_it_used(
        iris: Workspace, venv_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = [p for p in venv_cache.iterdir() if (p / COMPLETE).is_file()]
    stale = fake_environment(venv_cache, "f" * 20, 30 * 24 * 3600)
    monkeypatch.setenv("RECONCILER_KEEP_VENVS", str(max(1, len(real))))
    monkeypatch.setenv("RECONCILER_KEEP_RESULTS", "0")  # what the run used stays even so
    results = iris.root / ".reconciler" / "local" / "behaviour"
    old = fake_result(results, "old", 1000)

    result = iris.run("test", iris.env)
    assert result.code == 0, result.err
    assert not stale.exists()
    assert not old.exists()
    assert [p.name for p in results.iterdir()] != []  # this run's result, kept though the limit is 0
    assert any((p / COMPLETE).is_file() for p in venv_cache.iterdir())
