"""The broken-spec corpus: ``reconciler validate`` on every case of ``tests/cases/invalid/``.

Each case folder is copied into a throwaway repository and validated by the real CLI, in a
subprocess; its stderr must be exactly the lines of the case's ``expected.txt`` and the exit
code the one written there (always 1), with no traceback. Layout, conventions and how to add a
case: ``tests/cases/README.md``.

Regenerate the expected files after an intended change of messages with

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/spec/test_validate_cases.py

then read the diff: each message must still name the file, line and field and say what to do.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from reconciler.errors import SpecError
from reconciler.spec.loader import load_environment
from tests.golden_files import updating

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "cases" / "invalid"
UPDATE_GOLDEN = updating()
EXIT_PREFIX = "exit: "
SEVERAL = "many-"  # cases named many-* hold several problems; every other case exactly one
DIAGNOSTIC = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<text>.+)$")


def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if p.is_dir())


def install(name: str, root: Path) -> Path:
    """Copy case ``name`` to ``root/repo/<name>`` (``repo`` has a ``.git``: it is the
    repository the file checks stay inside) and apply its ``setup.json``. ``root/outside``
    holds files outside that repository, for links to point at. Returns ``root/repo``."""
    repo = root / "repo"
    (repo / ".git").mkdir(parents=True)
    (root / "outside" / "model").mkdir(parents=True)
    (root / "outside" / "model.json").write_text('{"weights": [1.0]}\n', encoding="utf-8")
    (root / "outside" / "model" / "model.json").write_text('{"weights": [1.0]}\n', encoding="utf-8")
    source = CASES / name
    target = repo / name
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("expected.txt", "setup.json"))
    setup_file = source / "setup.json"
    setup = json.loads(setup_file.read_text(encoding="utf-8")) if setup_file.exists() else {}
    for link, points_to in setup.get("symlinks", {}).items():
        path = target / link
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.symlink_to(points_to)
        except OSError as exc:  # e.g. Windows without the privilege
            pytest.skip(f"cannot create symbolic links here: {exc}")
    for file, size in setup.get("grow", {}).items():
        _grow(target / file, size)
    return repo


def _grow(path: Path, size: int) -> None:
    """Append YAML comment lines until the file is exactly ``size`` bytes."""
    missing = size - path.stat().st_size
    with path.open("ab") as stream:
        while missing > 0:
            line = b"#" + b"x" * min(98, missing - 2) + b"\n" if missing >= 2 else b"\n"
            stream.write(line)
            missing -= len(line)
    assert path.stat().st_size == size


def validate(repo: Path, name: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``python -m reconciler validate <name>/env`` with the repository as working directory."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", f"{name}/env", *options],
        cwd=repo, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120,
    )


def normalise(text: str, root: Path) -> list[str]:
    """The output's lines, with the temporary folder written ``<tmp>``."""
    for prefix in sorted({str(root.resolve()), str(root)}, key=len, reverse=True):
        text = text.replace(prefix, "<tmp>")
    return text.splitlines()


def read_expected(name: str) -> tuple[int, list[str]]:
    path = CASES / name / "expected.txt"
    if not path.exists():
        pytest.fail(f"{path} is missing: run UPDATE_GOLDEN=1 pytest {Path(__file__).name}, then check it")
    first, *lines = path.read_text(encoding="utf-8").splitlines()
    assert first.startswith(EXIT_PREFIX), f"{path}: the first line must be '{EXIT_PREFIX}<code>'"
    return int(first[len(EXIT_PREFIX):]), lines


def write_expected(name: str, code: int, lines: list[str]) -> None:
    text = "\n".join([f"{EXIT_PREFIX}{code}", *lines]) + "\n"
    (CASES / name / "expected.txt").write_text(text, encoding="utf-8")


def test_the_corpus_covers_enough_cases() -> None:
    names = case_names()
    assert len(names) >= 35
    assert len([n for n in names if n.startswith(SEVERAL)]) >= 4
    for name in names:
        assert (CASES / name / "env").is_dir(), f"{name}: a case holds its environment folder in env/"


@pytest.mark.parametrize("name", case_names())
def test_invalid_case_reports_exactly_the_expected_problems(name: str, tmp_path: Path) -> None:
    repo = install(name, tmp_path)
    result = validate(repo, name)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.stdout == ""
    actual = normalise(result.stderr, tmp_path)
    if UPDATE_GOLDEN:
        write_expected(name, result.returncode, actual)
    code, expected = read_expected(name)
    if not hasattr(yaml, "CSafeLoader") and any(": not valid YAML: " in line for line in expected):
        pytest.skip("YAML syntax messages are pinned as libyaml words them; this PyYAML lacks libyaml")
    assert (result.returncode, actual) == (code, expected)
    assert code == 1
    diagnostics = [line for line in actual if DIAGNOSTIC.match(line)]
    assert actual == [*diagnostics, f"error: {len(diagnostics)} problem{'s' if len(diagnostics) != 1 else ''} "
                                    "in the specs"]
    if name.startswith(SEVERAL):
        assert len(diagnostics) >= 2, f"{name}: a many-* case shows several problems reported in one run"
    else:
        assert len(diagnostics) == 1, f"{name}: a case holds one problem (name it many-* for several)"


def test_github_format_annotates_every_problem(tmp_path: Path) -> None:
    name = "many-problems-across-files"
    repo = install(name, tmp_path)
    result = validate(repo, name, "--format", "github")
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1
    _, expected = read_expected(name)
    annotations = []
    for line in expected[:-1]:
        match = DIAGNOSTIC.match(line)
        assert match, line
        annotations.append(f"::error file={match['file']},line={match['line']},col={match['column']}::"
                           f"{match['text']}")
    assert len(annotations) >= 3
    assert normalise(result.stdout, tmp_path) == annotations
    assert normalise(result.stderr, tmp_path) == [expected[-1]]


def test_billion_laughs_fails_fast_and_small(tmp_path: Path) -> None:
    """Expanding the aliases would build ~400 million strings; loading must stop early. The memory bounds
    prove it (an expansion would need gigabytes); wall time is not asserted: under a loaded CI machine it
    is noise, and speed goals live in benchmarks/."""
    name = "yaml-billion-laughs"
    repo = install(name, tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as caught:
            load_environment(repo / name / "env")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "billion laughs" in str(caught.value.diagnostics[0])
    assert peak < 50 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while loading"

    # The CLI too, in a subprocess: its peak memory close to that of a tiny case.
    _, bomb_rss = _timed_peak_rss(repo, f"{name}/env")
    small = "yaml-duplicate-key"
    small_repo = install(small, tmp_path / "small")
    _, small_rss = _timed_peak_rss(small_repo, f"{small}/env")
    assert bomb_rss - small_rss < 64 * 1024 * 1024, f"{(bomb_rss - small_rss) / 1e6:.1f} MB more than a tiny case"


def _timed_peak_rss(repo: Path, environment: str) -> tuple[float, int]:
    """Wall time and peak resident memory (bytes) of ``reconciler validate`` in a child."""
    resource = pytest.importorskip("resource")
    code = (
        "import resource, sys\n"
        "from reconciler.cli.main import main\n"
        "status = main(['validate', sys.argv[1]])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(status)\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, environment], cwd=repo, capture_output=True, text=True,
                            timeout=120)
    elapsed = time.perf_counter() - started
    assert result.returncode == 1, result.stderr
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    assert resource is not None
    return elapsed, int(result.stdout.split()[-1]) * unit


@pytest.mark.parametrize("environment", ["local", "prod"])
def test_sample_environments_are_valid(environment: str) -> None:
    result = subprocess.run([sys.executable, "-m", "reconciler", "validate", f"environments/{environment}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"environments/{environment}: valid (")
