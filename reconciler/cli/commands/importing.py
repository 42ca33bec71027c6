"""``reconciler import ENV_DIR [--id PATTERN] [--force]``: specs for the hub's unmanaged deployments."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "import", help="write Deployment specs for the hub's unmanaged deployments, to adopt them",
        description="Read the deployments the reconciler does not own (all, or those whose id matches --id) and "
                    "write one Deployment spec per deployment into ENV_DIR, imported-<name>.yaml, with "
                    "`adopt: <id>`: the next plan takes each over in place (an update that adds the ownership "
                    "labels) when its spec renders the same content, or replaces it, and says why. Only reads the "
                    "backend. Registry passwords are never written. See docs/migrating.md.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("--id", dest="pattern", metavar="PATTERN",
                        help="only deployments whose id matches this glob (e.g. 'sensors-*')")
    parser.add_argument("--force", action="store_true", help="overwrite imported-*.yaml files that exist")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.views import imported as view
    from reconciler.engine import Engine
    from reconciler.spec import importer
    from reconciler.spec.loader import load_environment

    with Engine(args.environment) as engine:
        snapshot = engine.snapshot(deployments_only=True)
        found = importer.import_deployments(engine.desired, snapshot, args.pattern)
    directory = engine.desired.environment.directory
    before = importer.snapshot_files([directory / item.file_name for item in found])
    paths = importer.write(found, directory, force=args.force)
    try:
        load_environment(directory)  # the folder must stay valid: names, references, IoT Hub's rules
    except Exception:
        importer.restore(before)
        raise
    print(view.render_json(found, paths) if args.format == "json" else view.render_text(found, paths, args.environment),
          end="")
    return exit_codes.OK
