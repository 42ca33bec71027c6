"""The repository boundary with links and ``..`` in the middle of paths: inside is allowed, out is refused.

Containment is decided on resolved directories, each resolved once per run (``paths.Boundary``) and a
model folder's entries come from one listing (``folders.Folders``): these cases pin that the shortcuts
see every link a full ``realpath`` would.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.spec.loader import load_environment
from reconciler.spec.paths import Boundary
from tests.spec.support import ENVIRONMENT, make_link, problems


def _repo(tmp_path: Path, model_path: str) -> Path:
    """A repository with a model folder ``shared/model`` (one file) and, beside it, ``outside/`` that is not
    in the repository; the environment's one Model points at ``model_path``."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "shared" / "model").mkdir(parents=True)
    (repo / "shared" / "model" / "weights.bin").write_bytes(b"w")
    (tmp_path / "outside" / "model").mkdir(parents=True)
    (tmp_path / "outside" / "model" / "weights.bin").write_bytes(b"o")
    env = repo / "environments" / "dev"
    env.mkdir(parents=True)
    (env / "environment.yaml").write_text(ENVIRONMENT)
    (env / "models.yaml").write_text("apiVersion: reconciler/v1\nkind: Model\nmetadata: {name: m}\n"
                                     f"spec: {{path: {model_path}}}\n")
    return env


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def test_a_linked_folder_in_the_middle_of_a_path_that_stays_inside_is_allowed(tmp_path: Path) -> None:
    env = _repo(tmp_path, "../../vendor/lib/model")
    make_link(env.parent.parent / "vendor" / "lib", "../shared")  # repo/vendor/lib -> repo/shared
    assert problems(env) == []
    assert load_environment(env).models["m"].path.name == "model"


def test_a_linked_folder_in_the_middle_of_a_path_that_leads_out_is_refused(tmp_path: Path) -> None:
    env = _repo(tmp_path, "../../vendor/lib/model")
    make_link(env.parent.parent / "vendor" / "lib", "../../outside")  # repo/vendor/lib -> outside
    assert problems(env) == ["repo/vendor/lib/model resolves outside the repository; spec files may only use "
                              "files inside it"]


def test_dot_dot_through_a_linked_folder_is_resolved_after_themake_link(tmp_path: Path) -> None:
    """``vendor/lib/../model``: ``..`` applies to where ``lib`` leads (outside), not to ``vendor``."""
    env = _repo(tmp_path, "../../vendor/lib/../model")
    make_link(env.parent.parent / "vendor" / "lib", "../../outside/model")
    (env.parent.parent / "vendor" / "model").mkdir()  # what cutting ".." textually would find, inside
    (env.parent.parent / "vendor" / "model" / "weights.bin").write_bytes(b"w")
    # (the message shows the path as written, shortened like os.path.relpath; the check resolved it)
    assert problems(env) == ["repo/vendor/model resolves outside the repository; spec files may only use files "
                              "inside it"]


def test_dot_dot_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    env = _repo(tmp_path, "../../shared/../../outside/model")
    assert problems(env) == ["outside/model resolves outside the repository; spec files may only use files "
                              "inside it"]


def test_a_link_deep_inside_a_model_folder_that_leads_out_is_refused(tmp_path: Path) -> None:
    env = _repo(tmp_path, "../../shared/model")
    deep = env.parent.parent / "shared" / "model" / "a" / "b" / "weights.bin"
    make_link(deep, "../../../../../outside/model/weights.bin")
    assert problems(env) == ["repo/shared/model/a/b/weights.bin is a link that resolves outside the repository"]


def test_a_link_inside_a_model_folder_to_a_folder_of_the_repository_is_allowed(tmp_path: Path) -> None:
    env = _repo(tmp_path, "../../shared/model")
    (env.parent.parent / "data").mkdir()
    (env.parent.parent / "data" / "vocab.txt").write_text("a\n")
    make_link(env.parent.parent / "shared" / "model" / "data", "../../data")
    assert problems(env) == []


def test_a_link_whose_target_passes_through_another_link_out_is_refused(tmp_path: Path) -> None:
    """A link to ``vendor/lib/weights.bin`` where ``vendor/lib`` itself leads out: resolved in full."""
    env = _repo(tmp_path, "../../shared/model")
    make_link(env.parent.parent / "vendor" / "lib", "../../outside/model")
    make_link(env.parent.parent / "shared" / "model" / "extra.bin", "../../vendor/lib/weights.bin")
    assert problems(env) == ["repo/shared/model/extra.bin is a link that resolves outside the repository"]


def test_boundary_agrees_with_realpath(tmp_path: Path) -> None:
    """Every path of a tree with links in the middle: inside exactly when ``os.path.realpath`` says so."""
    repo = tmp_path / "repo"
    (repo / "a" / "b").mkdir(parents=True)
    (tmp_path / "out" / "c").mkdir(parents=True)
    make_link(repo / "a" / "in", "b")
    make_link(repo / "a" / "out", "../../out")
    make_link(repo / "a" / "b" / "up", "../..")
    make_link(repo / "a" / "b" / "loop", "loop")
    boundary = Boundary(repo)
    inside = os.path.realpath(repo) + os.sep
    for relative in ("a", "a/in", "a/in/x", "a/out", "a/out/c", "a/out/../repo/a", "a/b/up", "a/b/up/../out",
                     "a/b/up/repo/a/in/up/x", "a/in/../..", "a/b/loop", "a/b/loop/x", "a/b/../../../out/c"):
        path = repo / relative
        expected = (os.path.realpath(path) + os.sep).startswith(inside)
        assert boundary.contains(path) == expected, relative
