"""Entry point: parse arguments, run one command, turn errors into messages and exit codes."""
# PYTHON_ARGCOMPLETE_OK (argcomplete's marker for global completion: see cli/completion.py)

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reconciler import __version__
from reconciler.cli import completion, exit_codes
from reconciler.cli.commands import COMMAND_MODULES, command_module
from reconciler.cli.views.diagnostics import print_error
from reconciler.errors import ReconcilerError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command`` alone (what it parses is the same)."""
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="GitOps for ML models on Azure IoT Edge: validate, plan and apply specs.",
    )
    parser.add_argument("--version", action="version", version=f"edge-reconciler {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [command] if command else COMMAND_MODULES:
        command_module(name).add_parser(subparsers)
    _quiet_anywhere(subparsers)
    return parser


QUIET_HELP = "print no progress (steps, bars): only results and errors"


def _quiet_anywhere(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``-q`` after the command too (``reconciler apply ENV -q``): each subcommand takes it, without a default
    of its own, so it never undoes a ``-q`` given before the command."""
    for parser in subparsers.choices.values():
        parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _quiet_anywhere(action)


def command_run(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs: its first word after the global ``-q``. None when that is not a command
    (``--help``, ``--version``, a typo, nothing): the parser of every command then answers."""
    for word in argv:
        if word not in ("-q", "--quiet"):
            return word if word in COMMAND_MODULES else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only the command run is imported and its parser built (about 20 ms less a run); completion needs them all.
    parser = build_parser(None if completion.asked() else command_run(argv))
    completion.complete(parser)  # returns at once unless the shell asks for completions
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except ReconcilerError as error:
        print_error(error, getattr(args, "format", "text"))
        return exit_codes.ERROR
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        return exit_codes.OK
    except Exception:  # noqa: BLE001 - the last line of defence: report a bug, not a crash
        print("error: an unexpected error occurred; this is a bug in edge-reconciler.", file=sys.stderr)
        print("Please report it with the details below.", file=sys.stderr)
        import traceback  # only for a bug: it imports linecache, tokenize and textwrap

        traceback.print_exc()
        return exit_codes.BUG
