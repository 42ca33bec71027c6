"""The Python that runs a scoring server: a virtualenv per conda file, built once and cached.

The image runs ``conda env create`` on its conda file; here there is no conda, so the
environment is a virtualenv with the file's ``pip:`` packages plus Azure ML's inference
server. A conda file that needs conda itself (any dependency other than ``python`` and
``pip``) is refused by name; ``--python PATH`` then runs an interpreter the team manages.

Cache: ``$RECONCILER_VENV_CACHE``, else ``$XDG_CACHE_HOME/edge-reconciler/venvs``, else
``~/.cache/edge-reconciler/venvs``; one folder per key, the SHA-256 of the conda file, the
interpreter's version and the server requirement. A folder is complete only once renamed into
place, so an interrupted build is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import BehaviourError
from reconciler.providers.base import Progress
from reconciler.spec.conda import read_conda
from reconciler.spec.paths import display_path

SERVER_PACKAGE = "azureml-inference-server-http"
SERVER_REQUIREMENT = f"{SERVER_PACKAGE}>=1.3"
SERVER_MODULE = "azureml_inference_server_http"
BUILD_TIMEOUT = 900.0  # seconds for creating and filling one environment
CHECK_TIMEOUT = 60.0
OUTPUT_TAIL = 4000  # characters of a failed install's output shown to the user
COMPLETE = "environment.json"


@dataclass(frozen=True)
class ScoringPython:
    """An interpreter with the inference server. ``built``: made now (else reused from the
    cache, or given with ``--python``)."""

    python: Path
    key: str
    built: bool
    seconds: float
    note: str = ""  # e.g. the conda file asks for another Python version


def cache_root() -> Path:
    override = os.environ.get("RECONCILER_VENV_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-reconciler" / "venvs"


def find_uv() -> str | None:
    """``uv`` on PATH, or installed beside this interpreter (``pip install uv`` in a venv)."""
    found = shutil.which("uv")
    if found:
        return found
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def run_bounded(command: list[str], timeout: float, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> tuple[int, str]:
    """Run ``command`` with a time limit; return its exit code and the tail of its output (stdout
    and stderr together, at most ``OUTPUT_TAIL`` characters kept, whatever it prints)."""
    with tempfile.TemporaryFile() as output:
        try:
            completed = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       timeout=timeout, env=env, cwd=cwd, check=False)
            code = completed.returncode
        except subprocess.TimeoutExpired:
            code = -1
        except OSError as exc:
            return 127, f"cannot run {command[0]}: {exc.strerror or exc}"
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - OUTPUT_TAIL))
        tail = output.read().decode("utf-8", "replace")
    if code == -1:
        tail += f"\n(stopped after {timeout:.0f} s)"
    return code, tail


def _version(python: str) -> str:
    if python == sys.executable:
        return ".".join(str(part) for part in sys.version_info[:3])
    code, out = run_bounded([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], CHECK_TIMEOUT)
    if code != 0:
        raise BehaviourError(f"{python} does not run: {out.strip()[-200:]}")
    return out.strip()


def user_python(path: Path) -> ScoringPython:
    """``--python PATH``: an interpreter the team manages; it must have the inference server."""
    started = time.monotonic()
    if not path.exists():
        raise BehaviourError(f"--python {path}: no such file")
    code, out = run_bounded([str(path), "-c", f"import {SERVER_MODULE}"], CHECK_TIMEOUT)
    if code != 0:
        raise BehaviourError(f"--python {path}: it cannot import {SERVER_MODULE} (Azure ML's inference server); "
                             f"install it there with `{path} -m pip install '{SERVER_REQUIREMENT}'`")
    return ScoringPython(path, "user", built=False, seconds=time.monotonic() - started)


def environment_key(conda_bytes: bytes, python_version: str) -> str:
    sha = hashlib.sha256(conda_bytes)
    sha.update(f"\0{python_version}\0{SERVER_REQUIREMENT}".encode())
    return sha.hexdigest()[:20]


def scoring_python(conda_file: Path, progress: Progress, base_python: str | None = None) -> ScoringPython:
    """The cached environment for ``conda_file``, built if missing (with uv when available)."""
    started = time.monotonic()
    conda = read_conda(conda_file)
    if conda.conda_only:
        names = ", ".join(conda.conda_only)
        raise BehaviourError(
            f"{display_path(conda_file)} lists packages only conda installs: {names}. Behaviour runs build a "
            "virtualenv from the `pip:` list: move them there (with their pip names), or make an interpreter "
            f"with them and {SERVER_PACKAGE} yourself and pass --python PATH")
    base = base_python or sys.executable
    version = _version(base)
    note = ""
    if conda.python and not version.startswith(f"{conda.python}.") and version != conda.python:
        note = f"{display_path(conda_file)} asks for Python {conda.python}; the samples ran on Python {version}"
    key = environment_key(conda_file.read_bytes(), version)
    root = cache_root()
    folder = root / key
    python = folder / "bin" / "python"
    if (folder / COMPLETE).is_file() and python.exists():
        return ScoringPython(python, key, built=False, seconds=time.monotonic() - started, note=note)
    requirements = [*conda.pip, SERVER_REQUIREMENT]
    uv = find_uv()
    progress.step(f"building the scoring environment of {display_path(conda_file)} "
                  f"({'uv' if uv else 'venv + pip'}; once per conda file): {', '.join(requirements)}")
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        _build(building, base, requirements, uv)
        (building / COMPLETE).write_text(json.dumps({
            "conda_file": str(conda_file), "python": version, "requirements": requirements,
            "installer": "uv" if uv else "pip"}, indent=2) + "\n")
        try:
            building.rename(folder)
        except OSError:  # another run finished the same environment first: use theirs
            if not (folder / COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return ScoringPython(python, key, built=True, seconds=time.monotonic() - started, note=note)


def _build(folder: Path, base: str, requirements: list[str], uv: str | None) -> None:
    python = folder / "bin" / "python"
    # The interpreter is never downloaded: only package registries are reached.
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if uv:
        steps = [[uv, "venv", "--quiet", "--python", base, str(folder)],
                 [uv, "pip", "install", "--quiet", "--python", str(python), *requirements]]
    else:
        steps = [[base, "-m", "venv", str(folder)],
                 [str(python), "-m", "pip", "install", "--quiet", *requirements]]
    for command in steps:
        code, output = run_bounded(command, BUILD_TIMEOUT, env=env)
        if code != 0:
            raise BehaviourError(
                f"building the scoring environment failed: `{' '.join(command[:3])} ...` exited with {code}; "
                "check the `pip:` packages of the conda file (names, versions, Python "
                f"{_version(base)}) and that the package index is reachable", detail=output.strip())
