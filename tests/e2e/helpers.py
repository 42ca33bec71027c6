"""Drive the real CLI on a copied sample repository with a real SQLite state."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli.main import main
from tests.golden_files import check_golden_file

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@dataclass
class Result:
    code: int
    out: str
    err: str


class Workspace:
    """A copy of the sample repository plus helpers to run ``reconciler`` on it."""

    def __init__(self, root: Path, env_dir: Path, capsys: pytest.CaptureFixture[str]):
        self.root = root
        self.env_dir = env_dir
        self.capsys = capsys

    def run(self, *args: str) -> Result:
        """Run the CLI in-process (fast); the environment folder is the first argument."""
        self.capsys.readouterr()
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            code = main([str(a) for a in args])
        finally:
            os.chdir(cwd)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def subprocess(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "reconciler", *args], cwd=self.root, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]

    @property
    def env(self) -> str:
        return str(self.env_dir.relative_to(self.root))

    def plan_json(self, *extra: str) -> dict[str, object]:
        result = self.run("plan", self.env, "--format", "json", *extra)
        assert result.code == 0, result.err
        data: dict[str, object] = json.loads(result.out)
        return data

    def apply(self, *extra: str) -> Result:
        result = self.run("apply", self.env, "--auto-approve", *extra)
        assert result.code == 0, result.err
        return result

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new))


def actions(plan: dict[str, object]) -> list[tuple[str, str]]:
    changes = plan["changes"]
    assert isinstance(changes, list)
    return [(c["resource"], c["action"]) for c in changes]


_STATE = re.compile(r'"state_fingerprint": "[0-9a-f]{64}"')


def stable(text: str) -> str:
    """Golden files pin everything but the state fingerprint, which covers creation times."""
    return _STATE.sub('"state_fingerprint": "<sha256 of the actual state>"', text)


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/<name>; ``UPDATE_GOLDEN=1`` rewrites the file instead."""
    check_golden_file(GOLDEN / name, stable(actual), name)
