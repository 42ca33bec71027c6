"""The compiled methods of dataclasses, kept between runs of the command line.

``@dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and
``__delattr__`` as source text and compiles it when the class is created: about 480 compilations for the
80 value classes a ``plan`` imports, 40 to 70 ms of CPU before any work (a third of the imports, measured on
the 2-core benchmark machine). The text of a class's methods is the same from run to run, so the compiled
code is too: it is kept, by text, in ``$RECONCILER_CODE_CACHE`` (a folder), else
``$XDG_CACHE_HOME/edge-reconciler/code``, else ``~/.cache/edge-reconciler/code``, one ``marshal`` file per
Python version (``sys.implementation.cache_tag``, the key ``.pyc`` files use), and ``dataclasses`` is given
an ``exec`` that compiles a text only when the file does not hold it. The code is executed exactly as
``dataclasses`` would execute its own compilation of the same text, in the same namespaces, so the classes
are the same. Set ``RECONCILER_CODE_CACHE`` to an empty value to turn it off.

**Trust.** The file holds code, like ``.pyc`` files and like the scoring virtualenvs this tool keeps
beside it in the same cache folder and runs. It is read only when it belongs to this user and nobody else
may write it (the check ``ssh`` makes of its keys), and only with this Python version's bytecode magic
number in front; anything else about it (damaged, truncated, foreign) makes it ignored and rewritten.
"""

from __future__ import annotations

import atexit
import builtins
import importlib.util
import marshal
import os
import stat
import sys
from pathlib import Path
from types import CodeType
from typing import Any

VARIABLE = "RECONCILER_CODE_CACHE"
MAX_ENTRIES = 1500  # a plan needs about 500; a bound on what other dataclasses of the process may add


def cache_file() -> Path | None:
    override = os.environ.get(VARIABLE)
    if override is not None:
        folder = Path(override) if override else None
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(base) / "edge-reconciler" / "code"
    tag = sys.implementation.cache_tag
    return folder / f"dataclasses.{tag}.marshal" if folder is not None and tag else None


class CodeCache:
    """Compiled code by source text, loaded from and saved to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.codes: dict[str, CodeType] = {}
        self.added = 0
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as file:
                info = os.fstat(file.fileno())
                foreign = hasattr(os, "getuid") and info.st_uid != os.getuid()
                if foreign or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    return
                content = file.read()
            magic = importlib.util.MAGIC_NUMBER
            if not content.startswith(magic):
                return
            codes = marshal.loads(memoryview(content)[len(magic):])  # marshal.load(file) reads in small pieces
        except (OSError, EOFError, ValueError, TypeError):
            return
        if isinstance(codes, dict) and all(isinstance(key, str) and isinstance(code, CodeType)
                                           for key, code in codes.items()):
            self.codes = codes

    def exec(self, source: Any, globals: dict[str, Any] | None = None,  # noqa: A002 -- exec's own names
             locals: dict[str, Any] | None = None) -> None:  # noqa: A002
        """``exec`` for ``dataclasses``: the same, with the compilation of a text done once."""
        if isinstance(source, str):
            code = self.codes.get(source)
            if code is None:
                code = compile(source, "<string>", "exec")
                if len(self.codes) < MAX_ENTRIES:
                    self.codes[source] = code
                    self.added += 1
            source = code
        builtins.exec(source, globals, locals)

    def save(self) -> None:
        """Write the file if this run compiled something new (atomically; a failure only costs the time)."""
        if not self.added:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            with open(temporary, "wb") as file:
                file.write(importlib.util.MAGIC_NUMBER)
                marshal.dump(self.codes, file)
            os.replace(temporary, self.path)
        except (OSError, ValueError):
            pass


def install() -> CodeCache | None:
    """Give ``dataclasses`` the cached ``exec`` (before the value classes are imported); saved at exit."""
    import dataclasses

    path = cache_file()
    if path is None or getattr(dataclasses, "exec", None) is not None:
        return None
    cache = CodeCache(path)
    dataclasses.exec = cache.exec  # type: ignore[attr-defined]  # a module global shadows the builtin
    atexit.register(cache.save)
    return cache
