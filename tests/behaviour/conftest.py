"""Behaviour tests run the real Azure ML inference server. Its virtualenv (made from the iris
conda file) is built once per checkout and shared by every test of the run: it lives in pytest's
cache folder (``.pytest_cache/d/reconciler-venvs``), so only the first run on a fresh clone pays
for it (seconds with uv, a few minutes with venv + pip)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_sample
from tests.e2e.helpers import Workspace


@pytest.fixture(scope="session")
def venv_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider: one build per run
    return Path(cache.mkdir("reconciler-venvs")) if cache is not None else tmp_path_factory.mktemp("venvs")


@pytest.fixture
def iris(tmp_path: Path, venv_cache: Path, capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A copy of the sample repository with the iris image's samples and gates."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RECONCILER_VENV_CACHE", str(venv_cache))
    root = tmp_path / "repo"
    env_dir = copy_sample(root, "local", behaviour=True)
    pin_running_python(root / "models" / "iris" / "conda.yaml")
    return Workspace(root, env_dir, capsys)


RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def pin_running_python(conda_file: Path) -> None:
    """The iris conda file pins a Python (3.11), and the scoring environment is made on the Python it pins.
    A test machine may have no such Python that uv can find, nor reach the interpreter downloads: the copy asks
    for the Python running the tests, which uv (or venv) always finds without a network."""
    text = conda_file.read_text()
    pinned = re.search(r"^  - python=\d+\.\d+$", text, re.MULTILINE)
    assert pinned is not None, f"{conda_file} pins no Python"
    conda_file.write_text(text.replace(pinned.group(0), f"  - python={RUNNING_PYTHON}"))
