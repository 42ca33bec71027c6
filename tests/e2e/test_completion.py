"""Shell completion (argcomplete), as the shell asks for it, and its cost to a normal start: none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def complete(line: str, cwd: Path, tmp_path: Path) -> list[str]:
    """What ``register-python-argcomplete``'s shell function gets for ``line`` (the cursor at its end)."""
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    result = subprocess.run([sys.executable, "-m", "reconciler"], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    # (argcomplete adds the space that ends a word only to a sole completion)
    return sorted(word.strip() for word in out.read_text().split("\n") if word)


@pytest.mark.parametrize(("line", "expected"), [
    ("reconciler wh", ["where"]),
    ("reconciler va", ["validate"]),
    ("reconciler plan environments/local --f", ["--format"]),
    ("reconciler plan environments/local --format ", ["json", "markdown", "text"]),
    ("reconciler rollout environments/local ", ["status"]),
    ("reconciler where environments/local ", ["image", "model"]),
    ("reconciler where environments/local model ", ["iris-classifier"]),
    ("reconciler where environments/local image iris-s", ["iris-scorer"]),
    ("reconciler where environments/missing model ", []),
])
def test_the_shell_gets_commands_options_choices_and_spec_names(sample_env: Path, tmp_path: Path, line: str,
                                                                 expected: list[str]) -> None:
    assert complete(line, sample_env.parents[1], tmp_path) == expected


def test_a_normal_start_does_not_import_argcomplete() -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "reconciler", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "reconciler.cli.main" in imported
    assert not [name for name in imported if name.startswith("argcomplete")]
