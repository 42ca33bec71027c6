"""``reconciler validate`` with several folders, or a folder of environments (the pre-commit hook's way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import copy_sample
from tests.e2e.helpers import Workspace


def test_a_folder_of_environments_checks_each_and_reports_every_problem(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    local = copy_sample(tmp_path, "local")
    copy_sample(tmp_path, "prod")
    ws = Workspace(tmp_path, local, capsys)
    valid = ws.run("validate", "environments")
    assert valid.code == 0, valid.err
    assert valid.out.splitlines() == [
        "environments/local: valid (local provider; 1 model(s), 1 image(s), 2 deployment(s))",
        "environments/prod: valid (azure provider; 1 model(s), 1 image(s), 2 deployment(s))"]
    assert ws.run("validate", "environments/prod", "environments", "environments/prod").out.splitlines() == [
        "environments/prod: valid (azure provider; 1 model(s), 1 image(s), 2 deployment(s))",
        "environments/local: valid (local provider; 1 model(s), 1 image(s), 2 deployment(s))"]  # each once

    ws.edit("environments/local/deployments.yaml", "priority: 10 ", "priority: high ")
    broken = ws.run("validate", "environments", "--format", "github")
    assert broken.code == 1
    assert broken.out.splitlines() == [
        "::error file=environments/local/deployments.yaml,line=23,col=13::Deployment/iris-base: spec.priority: "
        "must be an integer (got string 'high')",
        "environments/prod: valid (azure provider; 1 model(s), 1 image(s), 2 deployment(s))"]
    assert broken.err == "error: 1 problem in the specs\n"
    # One folder: as before, the error is the command's.
    one = ws.run("validate", "environments/local")
    assert one.code == 1 and one.err.endswith("error: 1 problem in the specs\n")
