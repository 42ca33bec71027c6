"""``reconciler validate ENV_DIR``: check the specs, report every problem, change nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes
from reconciler.spec.loader import load_environment
from reconciler.spec.paths import display_path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "validate", help="check specs against the schemas and the hub's rules",
        description="Check every spec of an environment folder; report every problem as "
                    "file:line:column: kind/name: field: message. Exit 1 if any.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("--format", choices=["text", "github"], default="text",
                        help="github: print ::error annotations for GitHub Actions")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    desired = load_environment(args.environment)
    counts = (f"{len(desired.models)} model(s), {len(desired.images)} image(s), "
              f"{len(desired.deployments)} deployment(s)")
    print(f"{display_path(args.environment)}: valid ({desired.environment.provider} provider; {counts})")
    return exit_codes.OK
