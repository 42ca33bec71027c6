"""The Python that runs a scoring server: a virtualenv per conda file, built once and cached.

The image runs ``conda env create`` on its conda file; here there is no conda, so the
environment is a virtualenv with the file's ``pip:`` packages plus Azure ML's inference
server. A conda file that needs conda itself (any dependency other than ``python`` and
``pip``) is refused by name; ``--python PATH`` then runs an interpreter the team manages.

The environment runs the Python the conda file pins (``python=X.Y``): uv makes it with ``uv venv
--python X.Y``, which finds that version or fetches it (``UV_PYTHON_DOWNLOADS`` as the user set it);
without uv only this interpreter can be used, so it must be ``X.Y``. Either way a mismatch is a clear
error naming the version and ``--python PATH``, never an environment on another Python.

Cache: ``$RECONCILER_VENV_CACHE``, else ``$XDG_CACHE_HOME/edge-reconciler/venvs``, else
``~/.cache/edge-reconciler/venvs``; one folder per key, the SHA-256 of the conda file, the
Python version (the pinned ``X.Y``, else this interpreter's) and the server requirement. A folder
is complete only once renamed into place, so an interrupted build is never reused. Each use stamps
its ``environment.json``; ``behaviour.gc`` prunes the ones used least recently.
"""

from __future__ import annotations

import contextlib
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

from reconciler.errors import BehaviourError, ReconcilerError
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
    note: str = ""  # --python runs another version than the conda file pins
    version: str = ""  # X.Y.Z, when known


def cache_root() -> Path:
    override = os.environ.get("RECONCILER_VENV_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-reconciler" / "venvs"


def touch(path: Path) -> None:
    """Stamp a cache entry as used now (its mtime is its last use)."""
    with contextlib.suppress(OSError):  # a read-only cache still works; it is pruned by creation time then
        os.utime(path)


UV_VARIABLE = "RECONCILER_UV"


def find_uv() -> str | None:
    """``$RECONCILER_UV`` (a path to uv, or ``none``: build with venv + pip), else ``uv`` on PATH, or
    installed beside this interpreter (``pip install uv`` in a venv)."""
    chosen = os.environ.get(UV_VARIABLE, "").strip()
    if chosen.lower() == "none":
        return None
    if chosen:
        return chosen
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
    return ScoringPython(path, "user", built=False, seconds=time.monotonic() - started, version=_version(str(path)))


def override_note(conda_file: Path, python: ScoringPython) -> str:
    """What a plan says when ``--python`` runs another Python than the conda file pins ('' when it does not)."""
    try:
        wanted = read_conda(conda_file).python
    except ReconcilerError:
        return ""
    version = python.version or _version(str(python.python))
    if wanted is None or version == wanted or version.startswith(f"{wanted}."):
        return ""
    return f"{display_path(conda_file)} asks for Python {wanted}; --python ran Python {version}"


def environment_key(conda_bytes: bytes, python_version: str) -> str:
    sha = hashlib.sha256(conda_bytes)
    sha.update(f"\0{python_version}\0{SERVER_REQUIREMENT}".encode())
    return sha.hexdigest()[:20]


def _interpreter(wanted: str | None, conda_file: Path, uv: str | None, base_python: str | None) -> tuple[str, str]:
    """The interpreter to make the virtualenv from, and the version that goes into the cache key.

    No ``python=`` in the conda file: this interpreter (its full version). A pinned ``X.Y``: this interpreter
    if it is ``X.Y``; else, with uv, the request ``X.Y`` itself (``uv venv --python X.Y`` finds it, or fetches
    it); without uv a clear error: venv + pip cannot make an environment of another Python."""
    base = base_python or sys.executable
    if wanted is None:
        return base, _version(base)
    version = _version(base)
    if version == wanted or version.startswith(f"{wanted}."):
        return base, wanted  # this interpreter is the one asked for: nothing to look for, nothing to fetch
    if uv:
        return wanted, wanted
    raise BehaviourError(
        f"{display_path(conda_file)} asks for Python {wanted}, and this is Python {version} without uv: install uv "
        f"(`pip install uv`; it finds or fetches Python {wanted}), run the reconciler on Python {wanted}, or pass "
        f"--python PATH (a Python {wanted} with {SERVER_PACKAGE})")


def scoring_python(conda_file: Path, progress: Progress, base_python: str | None = None) -> ScoringPython:
    """The cached environment for ``conda_file``, built if missing (with uv when available), on the Python
    the conda file pins (``python=X.Y``), else on this interpreter's version."""
    started = time.monotonic()
    conda = read_conda(conda_file)
    if conda.conda_only:
        names = ", ".join(conda.conda_only)
        raise BehaviourError(
            f"{display_path(conda_file)} lists packages only conda installs: {names}. Behaviour runs build a "
            "virtualenv from the `pip:` list: move them there (with their pip names), or make an interpreter "
            f"with them and {SERVER_PACKAGE} yourself and pass --python PATH")
    # A pinned version is the key as it is: a cached environment is used whatever would build it now.
    version = conda.python or _version(base_python or sys.executable)
    key = environment_key(conda_file.read_bytes(), version)
    root = cache_root()
    folder = root / key
    python = folder / "bin" / "python"
    if (folder / COMPLETE).is_file() and python.exists():
        touch(folder / COMPLETE)
        return ScoringPython(python, key, built=False, seconds=time.monotonic() - started)
    uv = find_uv()
    base, version = _interpreter(conda.python, conda_file, uv, base_python)
    requirements = [*conda.pip, SERVER_REQUIREMENT]
    progress.step(f"building the scoring environment of {display_path(conda_file)} "
                  f"(Python {version}, {'uv' if uv else 'venv + pip'}; once per conda file): {', '.join(requirements)}")
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        _build(building, base, requirements, uv, conda_file)
        (building / COMPLETE).write_text(json.dumps({
            "conda_file": str(conda_file), "python": _version(str(building / "bin" / "python")),
            "requirements": requirements, "installer": "uv" if uv else "pip"}, indent=2) + "\n")
        try:
            building.rename(folder)
        except OSError:  # another run finished the same environment first: use theirs
            if not (folder / COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    touch(folder / COMPLETE)
    return ScoringPython(python, key, built=True, seconds=time.monotonic() - started)


def _build(folder: Path, base: str, requirements: list[str], uv: str | None, conda_file: Path) -> None:
    python = folder / "bin" / "python"
    # uv may fetch the interpreter the conda file pins (UV_PYTHON_DOWNLOADS, as the user set it, decides).
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if uv:
        code, output = run_bounded([uv, "venv", "--quiet", "--python", base, str(folder)], BUILD_TIMEOUT, env=env)
        if code != 0:
            raise BehaviourError(
                f"{display_path(conda_file)} asks for Python {base}, and uv can neither find nor fetch it "
                f"(`uv venv --python {base}` exited with {code}): install it (`uv python install {base}`), or pass "
                f"--python PATH (a Python {base} with {SERVER_PACKAGE})", detail=output.strip())
        steps = [[uv, "pip", "install", "--quiet", "--python", str(python), *requirements]]
    else:
        steps = [[base, "-m", "venv", str(folder)],
                 [str(python), "-m", "pip", "install", "--quiet", *requirements]]
    for command in steps:
        code, output = run_bounded(command, BUILD_TIMEOUT, env=env)
        if code != 0:
            raise BehaviourError(
                f"building the scoring environment failed: `{' '.join(command[:3])} ...` exited with {code}; "
                "check the `pip:` packages of the conda file (names, versions, Python "
                f"{_version(str(python) if python.exists() else base)}) and that the package index is reachable",
                detail=output.strip())
