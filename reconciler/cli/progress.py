"""Progress for long work: a live line on a terminal, plain step lines in CI logs."""

from __future__ import annotations

import os
import sys
from typing import TextIO


class TerminalProgress:
    """Steps are always printed (to stderr); in-step progress only on an interactive
    terminal, redrawn in place, so CI logs stay short."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = self.stream.isatty() and not os.environ.get("CI")
        self._dirty = False

    def step(self, message: str) -> None:
        if self.quiet:
            return
        self._clear()
        print(message, file=self.stream, flush=True)

    def advance(self, done: int, total: int | None) -> None:
        if not self.live or self.quiet:
            return
        text = f"  {done / total:6.1%}" if total else f"  {done}"
        print(f"\r{text}", end="", file=self.stream, flush=True)
        self._dirty = True

    def _clear(self) -> None:
        if self._dirty:
            print("\r\033[K", end="", file=self.stream)
            self._dirty = False
