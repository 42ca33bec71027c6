"""What every test of the Azure backend needs around the emulator: a private HOME, and a
running emulator whose proxy and CA are in ``os.environ``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.azure_emulator.server import AzureEmulator


@contextmanager
def isolated_home(home: Path) -> Iterator[Path]:
    """``HOME`` set to ``home`` for the duration, then restored.

    azureml fixes its ``~/.azureml`` cache path when it is first imported. If an earlier test
    module imported it, that path stays; harmless, because every emulated workspace has a
    fresh workspace id, so no cached discovery entry ever matches."""
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        yield home
    finally:
        if saved is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = saved


@contextmanager
def running_emulator(home: Path) -> Iterator[AzureEmulator]:
    """An emulator reachable by in-process clients and by subprocesses started meanwhile."""
    with isolated_home(home), AzureEmulator() as emulator, emulator.environ():
        yield emulator
