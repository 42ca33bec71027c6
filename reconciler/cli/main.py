"""Entry point: parse arguments, run one command, turn errors into messages and exit codes."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from reconciler import __version__
from reconciler.cli import exit_codes
from reconciler.cli.commands import COMMANDS
from reconciler.cli.views.diagnostics import print_error
from reconciler.errors import ReconcilerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="GitOps for ML models on Azure IoT Edge: validate, plan and apply specs.",
    )
    parser.add_argument("--version", action="version", version=f"edge-reconciler {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
        traceback.print_exc()
        return exit_codes.BUG
