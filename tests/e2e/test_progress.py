"""Progress: bars on a terminal, plain lines in logs and CI, nothing with ``-q``."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.progress import TerminalProgress
from reconciler.cli.views.rollouts import progress_lines, render_text
from reconciler.model.plan import RolloutStatus
from tests.e2e.helpers import Workspace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_bar_is_redrawn_in_place_and_erased_when_complete() -> None:
    stream, clock = Terminal(), Clock()
    progress = TerminalProgress(stream, live=True, clock=clock)
    progress.step("hashing 80 MB of model files")
    progress.advance(20, 80)
    progress.advance(30, 80)  # within a tenth of a second: not redrawn
    clock.now += 4
    progress.advance(40, 80)
    progress.advance(80, 80)
    progress.step("registering model iris")
    assert stream.getvalue() == (
        "hashing 80 MB of model files\n"
        "\r\033[K  [#######.......................]  25.0%  0s"
        "\r\033[K  [###############...............]  50.0%  4s, about 4s left"
        "\r\033[K"  # complete: erased before what follows
        "registering model iris\n")


def test_work_of_unknown_size_moves_a_marker() -> None:
    stream, clock = Terminal(), Clock()
    progress = TerminalProgress(stream, live=True, clock=clock)
    progress.step("building image iris-scorer:3f2a9c1d0b7e")
    clock.now += 65
    progress.advance(3, None)
    progress.finish()
    assert stream.getvalue() == ("building image iris-scorer:3f2a9c1d0b7e\n"
                                 "\r\033[K  [   <=>                        ] 3  1m05s\r\033[K")


def test_in_logs_plain_lines_at_each_quarter_or_every_30_seconds() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = TerminalProgress(stream, clock=clock)
    assert not progress.live
    progress.step("registering model iris: 3 file(s), 12.0 MB")
    for done in range(0, 13):
        progress.advance(done, 12)
    progress.step("building image iris-scorer:3f2a9c1d0b7e")
    for _ in range(7):
        clock.now += 10
        progress.advance(1, None)
    assert stream.getvalue().splitlines() == [
        "registering model iris: 3 file(s), 12.0 MB",
        "  registering model iris: 3 file(s), 12.0 MB: 25%",
        "  registering model iris: 3 file(s), 12.0 MB: 50%",
        "  registering model iris: 3 file(s), 12.0 MB: 75%",
        "  registering model iris: 3 file(s), 12.0 MB: 100%",
        "building image iris-scorer:3f2a9c1d0b7e",
        "  building image iris-scorer:3f2a9c1d0b7e: still running after 30s",
        "  building image iris-scorer:3f2a9c1d0b7e: still running after 1m00s",
    ]


def test_ci_gets_plain_lines_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert not TerminalProgress(Terminal()).live
    monkeypatch.delenv("CI")
    assert TerminalProgress(Terminal()).live


def test_quiet_prints_nothing() -> None:
    stream = Terminal()
    progress = TerminalProgress(stream, quiet=True, live=True)
    progress.step("hashing")
    progress.advance(1, 2)
    assert stream.getvalue() == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_dash_q_anywhere_silences_the_steps(sample_env: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str) -> None:
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    ws = Workspace(sample_env.parents[1], sample_env, capsys)
    loud = ws.run("apply", ws.env, "--auto-approve")
    assert loud.code == 0 and "+ model/iris-classifier (iris-classifier)" in loud.err
    ws.edit("models/iris/model/model.json", '"classes"', '"comment": "retrained", "classes"')
    argv = ["-q", "apply", ws.env, "--auto-approve"] if where == "before" else ["apply", ws.env, "--auto-approve", "-q"]
    quiet = ws.run(*argv)
    assert quiet.code == 0, quiet.err
    assert quiet.err == ""
    assert "Apply complete (a fresh plan): 0 to add, 2 to change, 1 to replace, 0 to destroy." in quiet.out


def test_rollout_bars_show_the_rings_and_the_soak() -> None:
    status = RolloutStatus("iris-base", "iris-base-2", "iris-base-1", "canary", ("canary", "half"), "waiting",
                           "soaking", soak_seconds=1800, elapsed_seconds=600, ring_devices={"canary": 1, "half": 2,
                                                                                                "all": 4})
    assert progress_lines(status) == [
        "    devices [#######.......................] 1 of 4 in ring canary",
        "    soak    [##########....................] 10m of 30m",
    ]
    assert render_text([status], bars=False) + "".join(f"{line}\n" for line in progress_lines(status)) == \
        render_text([status], bars=True)


def test_a_real_terminal_sees_the_bar_and_ci_does_not(sample_env: Path, tmp_path: Path) -> None:
    """``reconciler apply`` on a pseudo-terminal, a 6 MB model uploaded by 1 MB chunks."""
    (sample_env.parents[1] / "models" / "iris" / "model" / "weights.bin").write_bytes(os.urandom(6 * 1024 * 1024))

    def on_a_terminal(state: str, **env: str) -> str:
        leader, follower = pty.openpty()
        environment = {k: v for k, v in os.environ.items() if k != "CI"}
        process = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", "environments/local",
                                    "--auto-approve"], cwd=sample_env.parents[1], stdin=follower, stdout=follower,
                                   stderr=follower, env={**environment, "RECONCILER_STATE_DIR": str(tmp_path / state),
                                                         **env})
        os.close(follower)
        output = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        assert process.wait(timeout=120) == 0, output
        return output.decode()

    live = on_a_terminal("a")
    assert "registering model iris-classifier: 2 file(s), 6.3 MB" in live
    assert "\r\x1b[K  [" in live and "%" in live
    logged = on_a_terminal("b", CI="true")
    assert "\x1b[K" not in logged
    assert "  registering model iris-classifier: 2 file(s), 6.3 MB: 100%" in logged
