"""The commands, in the order ``reconciler --help`` lists them: each command's name and its module here.

A run imports the module of the command it runs only (``cli.main``); ``--help``, shell completion and a
mistyped command build them all.
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMAND_MODULES = {
    "validate": "validate",
    "plan": "plan",
    "apply": "apply",
    "rollout": "rollout",
    "drift": "drift",
    "where": "where",
    "import": "importing",
    "rotate-credentials": "rotate",
    "force-unlock": "unlock",
    "doctor": "doctor",
    "device": "device",
    "schema": "schema",
    "test": "test",
    "serve": "serve",
    "gc": "gc",
}


def command_module(name: str) -> ModuleType:
    """The module whose ``add_parser`` adds the command ``name``."""
    return importlib.import_module(f"{__name__}.{COMMAND_MODULES[name]}")
