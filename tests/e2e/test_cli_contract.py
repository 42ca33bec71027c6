"""The CLI's own contract: the schema command and how errors become exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli import exit_codes
from reconciler.cli.main import main

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
