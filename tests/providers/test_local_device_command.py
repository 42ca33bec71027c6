"""``reconciler device``: simulated devices through the CLI, on a copy of the sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import main as cli
from tests.conftest import copy_sample


@pytest.fixture
def env_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    return copy_sample(tmp_path / "repo")


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_add_list_tag_show_remove(env_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "device", env_dir, "list")[1].startswith("No devices.")
    code, out, _ = run(capsys, "device", env_dir, "add", "cam-a1", "--tag", "environment=dev", "--tag", "site=a")
    assert (code, out) == (0, "Added device cam-a1: environment=dev, site=a\n")
    assert run(capsys, "device", env_dir, "add", "cam-b1", "--tag", "environment=dev")[0] == 0

    code, out, _ = run(capsys, "device", env_dir, "list")
    assert out.splitlines() == ["DEVICE  TAGS", "cam-a1  environment=dev, site=a", "cam-b1  environment=dev"]

    code, out, _ = run(capsys, "device", env_dir, "tag", "cam-b1", "site=b", "--untag", "environment")
    assert (code, out) == (0, "cam-b1: site=b\n")

    code, out, _ = run(capsys, "device", env_dir, "show", "cam-a1")
    assert code == 0 and "No deployment applies to this device" in out
    assert run(capsys, "apply", env_dir, "--auto-approve")[0] == 0
    code, out, _ = run(capsys, "device", env_dir, "show", "cam-a1")
    lines = out.splitlines()
    assert lines[:2] == ["Device cam-a1", "Tags: environment=dev, site=a"]
    assert lines[3].split() == ["MODULE", "IMAGE", "FROM", "DEPLOYMENT", "STATUS"]
    scorer, sensor = (line.split() for line in lines[4:])
    assert scorer[0] == "scorer" and scorer[1].startswith("localhost/iris-scorer:")
    assert scorer[2].startswith("iris-base-") and scorer[3] == "success"
    assert sensor[0] == "sensor" and sensor[2].startswith("iris-site-a-sensor-") and sensor[3] == "success"

    # What the device reports: a module's status, and reported properties.
    code, out, _ = run(capsys, "device", env_dir, "report", "cam-a1", "--module", "scorer", "--status", "failed",
                       "--reported", "temperature=21.5")
    assert (code, out) == (0, "cam-a1: scorer: failed, reported temperature=21.5\n")
    statuses = [line.split()[-1] for line in run(capsys, "device", env_dir, "show", "cam-a1")[1].splitlines()[4:]]
    assert statuses == ["failed", "success"]
    run(capsys, "device", env_dir, "report", "cam-a1", "--module", "scorer", "--status", "clear")
    statuses = [line.split()[-1] for line in run(capsys, "device", env_dir, "show", "cam-a1")[1].splitlines()[4:]]
    assert statuses == ["success", "success"]

    assert run(capsys, "device", env_dir, "remove", "cam-b1") == (0, "Removed device cam-b1\n", "")
    code, _, err = run(capsys, "device", env_dir, "remove", "cam-b1")
    assert code == 1 and "cam-b1: no such device" in err


def test_refusals_are_messages(env_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "device", env_dir, "add", "cam-1")
    code, _, err = run(capsys, "device", env_dir, "add", "cam-1")
    assert code == 1 and "error: cam-1: this device exists already" in err
    code, _, err = run(capsys, "device", env_dir, "tag", "cam-1")
    assert code == 1 and "nothing to change" in err
    with pytest.raises(SystemExit):
        cli.main(["device", str(env_dir), "add", "cam-2", "--tag", "no-equals-sign"])
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_only_the_local_backend_has_simulated_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    prod = copy_sample(tmp_path / "repo", "prod")
    code, _, err = run(capsys, "device", prod, "list")
    assert code == 1 and "uses the 'azure' provider: simulated devices exist only on the local backend" in err
    assert "Traceback" not in err
