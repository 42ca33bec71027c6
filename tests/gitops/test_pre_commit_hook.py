"""The pre-commit hook (.pre-commit-hooks.yaml), run by the real pre-commit against a throwaway repository.

This repository, as it is in the working tree, is committed into a temporary hook repository; a
repository of specs names it in its .pre-commit-config.yaml, as a team would, and installs the git hook.
pre-commit then builds the hook's environment from the hook repository (``language: python``: it
pip-installs edge-reconciler, whose dependencies come from PyPI) and runs it on ``git commit``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_sample

PRE_COMMIT = Path(sys.executable).parent / "pre-commit"
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_IDENTITY, "PATH": f"{PRE_COMMIT.parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args], cwd=cwd,
                          env=env, text=True, capture_output=True, check=check, timeout=900)


def hook_repository(destination: Path) -> str:
    """This repository's files (tracked and new, as in the working tree), committed; returns the commit."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = REPO / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # reconciler/schemas
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    git(destination, "init", "-q")
    git(destination, "add", "-A")
    git(destination, "commit", "-q", "-m", "edge-reconciler")
    return git(destination, "rev-parse", "HEAD").stdout.strip()


def test_the_manifest_offers_reconciler_validate() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert [h["id"] for h in hooks] == ["reconciler-validate"]
    hook = hooks[0]
    assert hook["entry"] == "reconciler validate" and hook["args"] == ["environments"]
    assert hook["language"] == "python" and hook["pass_filenames"] is False


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_hook_refuses_a_commit_with_invalid_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    hooks = tmp_path / "hooks"
    rev = hook_repository(hooks)
    specs = tmp_path / "specs"
    environment = copy_sample(specs)
    shutil.rmtree(specs / ".git")
    copy_sample(specs, "prod")
    (specs / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks.as_posix()}\n    rev: {rev}\n    hooks:\n      - id: reconciler-validate\n")
    (specs / ".gitignore").write_text(".reconciler/\n")  # the caches validate keeps beside the specs
    git(specs, "init", "-q")
    git(specs, "add", "-A")
    installed = subprocess.run([str(PRE_COMMIT), "install"], cwd=specs, text=True, capture_output=True)
    assert installed.returncode == 0, installed.stderr

    first = git(specs, "commit", "-m", "specs", check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "reconciler validate" in first.stdout + first.stderr and "Passed" in first.stdout + first.stderr

    deployments = environment / "deployments.yaml"
    deployments.write_text(deployments.read_text().replace("priority: 10 ", "priority: high ", 1))
    git(specs, "add", "-A")
    refused = git(specs, "commit", "-m", "a broken priority", check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output
    assert "reconciler validate" in output and "Failed" in output
    assert ("environments/local/deployments.yaml:23:13: Deployment/iris-base: spec.priority: must be an integer "
            "(got string 'high')") in output
    assert "environments/prod: valid" in output  # every environment is checked, not only the first broken one
    assert git(specs, "rev-list", "--count", "HEAD").stdout.strip() == "1"  # nothing was committed

    deployments.write_text(deployments.read_text().replace("priority: high ", "priority: 11 ", 1))
    git(specs, "add", "-A")
    fixed = git(specs, "commit", "-m", "a priority", check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr

    # A change outside the hook's files does not run it.
    (specs / "NOTES.txt").write_text("notes\n")
    git(specs, "add", "NOTES.txt")
    skipped = git(specs, "commit", "-m", "notes", check=False)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "(no files to check)Skipped" in skipped.stdout + skipped.stderr
