"""``reconciler where ENV_DIR model NAME[:VERSION] | image NAME[:LABEL]``: lineage.

Which images package a model version, which deployments run those images, and how many devices each
reaches (with ``--devices``, which). Reads only: one snapshot, then one device query per deployment.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes
from reconciler.cli.completion import spec_names


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "where", help="lineage: the images, deployments and devices a model version or an image reaches",
        description="Show which images package a model version (or every version of a model), which "
                    "deployments run those images, and how many devices each deployment's target condition "
                    "selects now. With an image, the same from the image on. Reads only.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("kind", choices=["model", "image"], help="what to trace")
    target = parser.add_argument("target", metavar="NAME[:VERSION]",
                                 help="a model (NAME or NAME:VERSION) or an image (NAME or NAME:LABEL)")
    target.completer = spec_names  # type: ignore[attr-defined]  # argcomplete reads it (cli/completion.py)
    parser.add_argument("--devices", action="store_true",
                        help="list the devices each deployment reaches (local: the simulated devices; Azure: "
                             "one IoT Hub device query per deployment)")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.progress import TerminalProgress
    from reconciler.cli.views import lineage as view
    from reconciler.engine import Engine

    with Engine(args.environment, TerminalProgress(quiet=args.quiet or args.format != "text")) as engine:
        found = engine.where(args.kind, args.target, devices=args.devices)
    print(view.render_json(found) if args.format == "json" else view.render_text(found), end="")
    return exit_codes.OK
