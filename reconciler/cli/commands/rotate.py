"""``reconciler rotate-credentials ENV_DIR REGISTRY``: new pull credentials for devices."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rotate-credentials", help="rotate the pull credentials devices use for a registry",
        description="Switch a registry to new pull credentials. Deployments embed the credentials in their "
                    "(immutable) content, so the next plan replaces every deployment that uses the registry; "
                    "apply it to finish the rotation.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("registry", metavar="REGISTRY", help="a registry name from environment.yaml")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.engine import Engine

    with Engine(args.environment) as engine:
        version = engine.rotate_credentials(args.registry)
    print(f"Registry {args.registry} now uses credential version {version}.")
    print(f"Run `reconciler plan {args.environment}` to see the deployments to replace, then apply.")
    return exit_codes.OK
