"""Shell completion with argcomplete, at no cost to a normal start.

The shell asks for completions by running ``reconciler`` with ``_ARGCOMPLETE`` set; only then is argcomplete
imported (``complete``), so every other run pays one environment lookup. Setup, once per shell (see
README.md, "Shell completion"):

    bash, zsh:  eval "$(register-python-argcomplete reconciler)"
    fish:       register-python-argcomplete --shell fish reconciler | source

Paths (ENV_DIR, plan files) are completed by the shell itself; ``where`` completes the model and image
names of the environment folder given before them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def asked() -> bool:
    """Whether the shell is asking for completions (``_ARGCOMPLETE``)."""
    return "_ARGCOMPLETE" in os.environ


def complete(parser: argparse.ArgumentParser) -> None:
    """When the shell is asking, print the completions and exit; else return at once."""
    if not asked():
        return
    import argcomplete

    argcomplete.autocomplete(parser, always_complete_options=False)


def spec_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """A completer for ``where ENV_DIR model|image NAME``: the names of that kind in the environment's specs."""
    from reconciler.errors import ReconcilerError
    from reconciler.spec.loader import load_environment

    try:
        desired = load_environment(Path(parsed_args.environment))
    except (ReconcilerError, OSError):
        return []
    names = desired.models if parsed_args.kind == "model" else desired.image_names
    return sorted(name for name in names if name.startswith(prefix))
