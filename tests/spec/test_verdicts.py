"""The whole-load cache (``spec.verdicts``): an unchanged environment is not parsed, validated or checked
again; any change to what the load read (a spec, a referenced file, a folder, a link) loads it afresh,
and a damaged or foreign cache file is ignored without running anything in it."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import pickletools
import shutil
import sys
from pathlib import Path

import pytest

from reconciler.spec import checks, verdicts
from reconciler.spec.loader import load_environment
from tests.spec.support import ENVIRONMENT, SCORE, make_link, problems, use_own_cache


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_own_cache(tmp_path, monkeypatch)


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per full load (the checks run)."""
    runs: list[int] = []
    original = checks.check_all

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(checks, "check_all", counting)
    return runs


def _repo(tmp_path: Path) -> Path:
    """A repository with a model folder ``shared/model``, a scoring script and conda file in ``code/``, and
    ``outside/`` beside it (not in the repository)."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "shared" / "model").mkdir(parents=True)
    (repo / "shared" / "model" / "weights.bin").write_bytes(b"w")
    (repo / "code").mkdir()
    (repo / "code" / "score.py").write_text(SCORE)
    (repo / "code" / "conda.yaml").write_text("dependencies:\n  - python=3.10\n")
    (tmp_path / "outside" / "model").mkdir(parents=True)
    (tmp_path / "outside" / "model" / "weights.bin").write_bytes(b"o")
    env = repo / "environments" / "dev"
    env.mkdir(parents=True)
    (env / "environment.yaml").write_text(ENVIRONMENT)
    (env / "specs.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Model\nmetadata: {name: m}\nspec: {path: ../../shared/model}\n---\n"
        "apiVersion: reconciler/v1\nkind: Image\nmetadata: {name: img}\n"
        "spec: {entryScript: ../../code/score.py, condaFile: ../../code/conda.yaml, models: [m]}\n")
    return env


def test_an_unchanged_environment_is_not_loaded_again(tmp_path: Path, checked: list[int]) -> None:
    env = _repo(tmp_path)
    first = load_environment(env)
    assert load_environment(env) == first
    assert load_environment(env).images["img"].entry_script == first.images["img"].entry_script
    assert checked == [1]
    [verdict] = (tmp_path / "cache" / "spec-cache").glob("*.verdict")
    assert verdict.stat().st_size > 0


def test_an_edited_spec_file_is_loaded_afresh(tmp_path: Path, checked: list[int]) -> None:
    env = _repo(tmp_path)
    load_environment(env)
    specs = env / "specs.yaml"
    specs.write_text(specs.read_text().replace("metadata: {name: m}", "metadata: {name: m, tags: {a: b}}"))
    assert load_environment(env).models["m"].tags == {"a": "b"}
    assert checked == [1, 1]


def test_a_new_spec_file_is_loaded_afresh(tmp_path: Path, checked: list[int]) -> None:
    env = _repo(tmp_path)
    load_environment(env)
    (env / "more").mkdir()
    (env / "more" / "m2.yaml").write_text("apiVersion: reconciler/v1\nkind: Model\nmetadata: {name: m2}\n"
                                          "spec: {path: ../../../shared/model}\n")
    assert set(load_environment(env).models) == {"m", "m2"}


def test_a_broken_scoring_script_is_reported_after_a_cached_load(tmp_path: Path) -> None:
    env = _repo(tmp_path)
    load_environment(env)
    (tmp_path / "repo" / "code" / "score.py").write_text("def init():\n    pass\n")
    assert problems(env) == ["score.py has no top-level run(input_data) function (Azure ML calls it per request)"]


def test_a_broken_conda_file_is_reported_after_a_cached_load(tmp_path: Path) -> None:
    env = _repo(tmp_path)
    load_environment(env)
    (tmp_path / "repo" / "code" / "conda.yaml").write_text("name: x\n")
    assert problems(env) == ["conda.yaml has no 'dependencies' list (a conda environment file needs one)"]


def test_an_emptied_model_folder_is_reported_after_a_cached_load(tmp_path: Path) -> None:
    env = _repo(tmp_path)
    (tmp_path / "repo" / "shared" / "model" / "deep").mkdir()
    (tmp_path / "repo" / "shared" / "model" / "deep" / "more.bin").write_bytes(b"m")
    load_environment(env)
    (tmp_path / "repo" / "shared" / "model" / "weights.bin").unlink()
    assert load_environment(env).models["m"].path is not None  # a file is still there, deep below
    (tmp_path / "repo" / "shared" / "model" / "deep" / "more.bin").unlink()
    assert problems(env) == ["repo/shared/model is an empty folder"]


def test_a_link_in_a_model_folder_moved_to_lead_out_is_refused_after_a_cached_load(tmp_path: Path) -> None:
    env = _repo(tmp_path)
    (tmp_path / "repo" / "data").mkdir()
    (tmp_path / "repo" / "data" / "vocab.txt").write_text("a\n")
    link = tmp_path / "repo" / "shared" / "model" / "vocab.txt"
    make_link(link, "../../data/vocab.txt")
    assert problems(env) == []
    link.unlink()
    make_link(link, "../../../outside/model/weights.bin")
    assert problems(env) == ["repo/shared/model/vocab.txt is a link that resolves outside the repository"]


def test_a_linked_folder_in_the_middle_of_a_path_moved_to_lead_out_is_refused(tmp_path: Path) -> None:
    """Nothing below the model folder changes: only a link in the middle of its path (in ``vendor/``)."""
    env = _repo(tmp_path)
    (env / "specs.yaml").write_text((env / "specs.yaml").read_text().replace("../../shared/model",
                                                                             "../../vendor/lib/model"))
    (tmp_path / "repo" / "vendor").mkdir()
    lib = tmp_path / "repo" / "vendor" / "lib"
    make_link(lib, "../shared")
    assert problems(env) == []
    lib.unlink()
    make_link(lib, "../../outside")
    assert problems(env) == ["repo/vendor/lib/model resolves outside the repository; spec files may only use "
                              "files inside it"]


def test_a_link_whose_target_passes_through_a_moved_link_is_refused(tmp_path: Path) -> None:
    """The link below the model folder is unchanged; the link its target passes through leads out now."""
    env = _repo(tmp_path)
    (tmp_path / "repo" / "vendor").mkdir()
    lib = tmp_path / "repo" / "vendor" / "lib"
    make_link(lib, "../shared/model")
    make_link(tmp_path / "repo" / "shared" / "model" / "extra.bin", "../../vendor/lib/weights.bin")
    assert problems(env) == []
    lib.unlink()
    make_link(lib, "../../outside/model")
    assert problems(env) == ["repo/shared/model/extra.bin is a link that resolves outside the repository"]


def test_another_working_directory_is_loaded_afresh(tmp_path: Path, checked: list[int],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Locations are shown relative to the working directory: a verdict is kept for one."""
    env = _repo(tmp_path)
    first = load_environment(env)
    monkeypatch.chdir(tmp_path / "repo")
    second = load_environment(env)
    assert checked == [1, 1]
    assert first.models["m"].location.file != second.models["m"].location.file


def test_a_load_with_problems_is_not_kept(tmp_path: Path) -> None:
    env = _repo(tmp_path)
    shutil.rmtree(tmp_path / "repo" / "shared" / "model")
    assert problems(env) == ["no such file or folder: repo/shared/model"]
    assert not list((tmp_path / "cache" / "spec-cache").glob("*.verdict"))


def test_inputs_changed_just_before_the_load_are_not_trusted(tmp_path: Path, checked: list[int],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written within ``RACY_SECONDS`` could change again within the same clock tick unseen."""
    monkeypatch.setattr(verdicts, "RACY_SECONDS", 1.0)
    env = _repo(tmp_path)
    load_environment(env)
    load_environment(env)
    assert checked == [1, 1]
    assert not list((tmp_path / "cache" / "spec-cache").glob("*.verdict"))


def test_a_damaged_cache_file_is_ignored(tmp_path: Path, checked: list[int]) -> None:
    env = _repo(tmp_path)
    first = load_environment(env)
    [verdict] = (tmp_path / "cache" / "spec-cache").glob("*.verdict")
    content = verdict.read_bytes()
    for damaged in (b"", b"not a pickle", content[: len(content) // 2], content[:-10] + b"\x00" * 10):
        verdict.write_bytes(damaged)
        assert load_environment(env) == first
    assert len(checked) == 5


def test_a_foreign_pickle_is_not_run(tmp_path: Path, checked: list[int]) -> None:
    """A crafted file would call anything it names: the unpickler resolves spec values and paths only."""
    env = _repo(tmp_path)
    load_environment(env)
    [verdict] = (tmp_path / "cache" / "spec-cache").glob("*.verdict")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return os.mkdir, (str(marker),)

    verdict.write_bytes(pickle.dumps(Payload()))
    assert load_environment(env).models["m"]
    assert not marker.exists()
    assert checked == [1, 1]



def _path_modules(data: bytes) -> set[str]:
    """The modules the pickles of a verdict file name for their path classes (protocol 4+: two strings, then
    STACK_GLOBAL)."""
    stream = io.BytesIO(data)
    strings: list[str] = []
    found = set()
    while stream.tell() < len(data):
        for opcode, argument, _ in pickletools.genops(stream):
            if isinstance(argument, str):
                strings.append(argument)
            elif opcode.name == "STACK_GLOBAL" and strings[-1] == "PosixPath":
                found.add(strings[-2])
    return found


def test_paths_pickled_by_python_3_13_are_read(tmp_path: Path, checked: list[int],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.13 defines the path classes in ``pathlib._local`` and pickles them so: the unpickler refused them,
    and every load there was a full one."""
    env = _repo(tmp_path)
    with monkeypatch.context() as python_3_13:
        python_3_13.setitem(sys.modules, "pathlib._local", pathlib)
        python_3_13.setattr(pathlib.PosixPath, "__module__", "pathlib._local")
        first = load_environment(env)
    [verdict] = (tmp_path / "cache" / "spec-cache").glob("*.verdict")
    assert _path_modules(verdict.read_bytes()) == {"pathlib._local"}
    assert load_environment(env) == first
    assert checked == [1]  # the second load came from the cache
