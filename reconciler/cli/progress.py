"""Progress for long work (hashing model files, uploads, image builds, apply and rollout steps), on stderr.

On an interactive terminal each step is a line and the work within it a bar redrawn in place (at most ten
times a second); when stderr is not a terminal, or in CI (``CI`` set), each step is a line and the work
within it a plain line at each quarter, or every 30 s when its size is unknown (a build the backend
runs), so logs stay short and still show life. ``quiet`` (``reconciler -q``, or an output meant for
machines) prints nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1
HEARTBEAT_SECONDS = 30.0


def meter(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#########.....................]``: a fraction (0 to 1) as a bar."""
    filled = int(min(1.0, max(0.0, fraction)) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def interactive(stream: TextIO) -> bool:
    """Whether to draw for a person: a terminal, and not CI."""
    return stream.isatty() and not os.environ.get("CI")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class TerminalProgress:
    """``providers.base.Progress`` for the CLI (see the module docstring)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False, *, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = interactive(self.stream) if live is None else live
        self._clock = clock
        self._message = ""
        self._started = self._shown = clock()
        self._quarter = 0
        self._dirty = False

    def step(self, message: str) -> None:
        if self.quiet:
            return
        self.finish()
        self._message = message
        self._started = self._shown = self._clock()
        self._quarter = 0
        print(message, file=self.stream, flush=True)

    def advance(self, done: int, total: int | None) -> None:
        if self.quiet or not self._message:  # progress within no announced step (small work): nothing to show
            return
        now = self._clock()
        if self.live:
            if total and done >= total:
                self.finish()  # complete: leave no bar behind for the output that follows
            elif not self._dirty or now - self._shown >= REDRAW_SECONDS:
                self._shown = now
                self.stream.write(f"\r\033[K{self.bar(done, total, now - self._started)}")
                self.stream.flush()
                self._dirty = True
        elif total:
            quarter = min(4, done * 4 // total)
            if quarter > self._quarter:
                self._quarter = quarter
                print(f"  {self._message}: {quarter * 25}%", file=self.stream, flush=True)
        elif now - self._shown >= HEARTBEAT_SECONDS:
            self._shown = now
            print(f"  {self._message}: still running after {_duration(now - self._started)}", file=self.stream,
                  flush=True)

    @staticmethod
    def bar(done: int, total: int | None, elapsed: float) -> str:
        """``  [#########.....................]  30.0%  4s, about 9s left``, or, with no total,
        ``  [   <=>                        ]  12  1m05s`` (the marker moves with each advance)."""
        if total:
            fraction = min(1.0, max(0.0, done / total))
            text = f"  {meter(fraction)} {fraction:6.1%}  {_duration(elapsed)}"
            if fraction > 0.02 and elapsed >= 2:
                text += f", about {_duration(elapsed / fraction - elapsed)} left"
            return text
        position = done % (BAR_WIDTH - 3)
        return f"  [{' ' * position}<=>{' ' * (BAR_WIDTH - 3 - position)}] {done}  {_duration(elapsed)}"

    def finish(self) -> None:
        """Erase a bar still on the line (before other output)."""
        if self._dirty:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._dirty = False
