"""``reconciler serve ENV_DIR IMAGE [--port N]``: the image's scoring server in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes
from reconciler.cli.commands.test import stop_on_sigterm


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="run an image's scoring server in the foreground (for curl)",
        description="Start Azure ML's inference server (azmlinfsrv) for IMAGE as the image would run it: the "
                    "entry script and the models (from the repository) laid out as in the image, in the cached "
                    "environment of its conda file, on 127.0.0.1. Ctrl-C stops it.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("image", metavar="IMAGE", help="an Image spec name")
    parser.add_argument("--port", type=int, metavar="N", help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--python", type=Path, metavar="PATH",
                        help="run the server with this interpreter (it must have azureml-inference-server-http)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.progress import TerminalProgress
    from reconciler.engine import Engine

    with stop_on_sigterm(), Engine(args.environment, TerminalProgress()) as engine:
        try:
            engine.serve(args.image, args.port, python=args.python)
        except KeyboardInterrupt:
            print("Stopped.")
    return exit_codes.OK
