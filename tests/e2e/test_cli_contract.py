"""The CLI's own contract: the schema command and how errors become exit codes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import exit_codes
from reconciler.cli.commands import COMMAND_MODULES
from reconciler.cli.main import build_parser, command_run, main

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_schema_prints_each_kind_as_stored(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "deployment"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((SCHEMAS / "deployment.schema.json").read_text())
    assert main(["schema"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)) == ["Deployment", "Environment", "Image", "Model"]


def test_a_missing_environment_folder_is_an_error_not_a_crash(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    assert main(["plan", str(tmp_path / "nowhere")]) == exit_codes.ERROR
    err = capsys.readouterr().err
    assert "not a folder: pass environments/<name>" in err and "Traceback" not in err


def test_an_unexpected_exception_is_reported_as_a_bug_with_exit_3(capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  sample_env: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("reconciler.spec.loader.load_environment", broken)  # validate imports it when it runs
    assert main(["validate", str(sample_env)]) == exit_codes.BUG
    err = capsys.readouterr().err
    assert "this is a bug in edge-reconciler" in err and "RuntimeError: boom" in err


def test_apply_without_a_terminal_asks_for_auto_approve(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        sample_env: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["apply", str(sample_env)]) == exit_codes.ERROR
    assert "run again with --auto-approve" in capsys.readouterr().err
    assert not (tmp_path / "state" / "state.db").exists()  # nothing was applied


def _parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_each_command_alone_parses_as_in_the_whole_parser() -> None:
    """A run builds the parser of its command only (``command_run``): each module adds the command its name
    maps to, and the same words give the same arguments both ways."""
    whole = build_parser()
    assert list(_parsers(whole)) == list(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        alone = build_parser(name)
        assert list(_parsers(alone)) == [name]
        assert _parsers(alone)[name].format_help() == _parsers(whole)[name].format_help()
    for argv in (["plan", "environments/dev", "--out", "p.json", "--detailed-exitcode", "-q"],
                 ["-q", "apply", "p.json", "--auto-approve"], ["device", "env", "add", "cam-1", "--tag", "a=b"],
                 ["rollout", "env", "status"], ["force-unlock", "env", "1234"]):
        assert command_run(argv) == next(word for word in argv if word != "-q")
        assert vars(build_parser(command_run(argv)).parse_args(argv)) == vars(whole.parse_args(argv))


def test_help_version_and_unknown_commands_get_the_whole_parser(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["--version"], ["-q", "--help"], ["plna", "env"], []):
        assert command_run(argv) is None
    with pytest.raises(SystemExit):
        main(["plna", "env"])
    assert "invalid choice: 'plna' (choose from 'validate', 'plan'," in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in COMMAND_MODULES)


def test_a_plan_imports_no_other_command(sample_env: Path, tmp_path: Path) -> None:
    probe = ("import sys\nfrom reconciler.cli.main import main\ncode = main(sys.argv[1:])\n"
             "print(code, sorted(m for m in sys.modules if m.startswith('reconciler.cli.commands.')))\n")
    done = subprocess.run([sys.executable, "-c", probe, "plan", str(sample_env), "-q"], capture_output=True,
                          text=True, env={**os.environ, "RECONCILER_STATE_DIR": str(tmp_path / "state")})
    assert done.stdout.splitlines()[-1] == "0 ['reconciler.cli.commands.plan', 'reconciler.cli.commands.test']"
