"""``reconciler validate ENV_DIR...``: check the specs, report every problem, change nothing.

Several folders may be given (the pre-commit hook passes ``environments``): a folder that holds no
spec of its own but environment folders below it stands for each of them. Every environment is
checked even when an earlier one is invalid, so one run reports every problem.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes
from reconciler.spec.paths import display_path

ENVIRONMENT_FILE = "environment.yaml"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "validate", help="check specs against the schemas and the hub's rules",
        description="Check every spec of one or more environment folders; report every problem as "
                    "file:line:column: kind/name: field: message. Exit 1 if any. A folder of environment "
                    "folders (such as environments/) checks each of them.",
    )
    parser.add_argument("environments", type=Path, nargs="+", metavar="ENV_DIR",
                        help="an environments/<name> folder, or a folder of them")
    parser.add_argument("--format", choices=["text", "github"], default="text",
                        help="github: print ::error annotations for GitHub Actions")
    parser.set_defaults(run=run)


def expand(folders: list[Path]) -> list[Path]:
    """The environment folders to check: each folder given, or, for a folder with no ``*.yaml`` of its
    own, its subfolders that have an ``environment.yaml`` (sorted); in order, each once."""
    found: list[Path] = []
    for folder in folders:
        children = []
        if folder.is_dir() and not any(folder.glob("*.yaml")):
            children = sorted(child.parent for child in folder.glob(f"*/{ENVIRONMENT_FILE}"))
        for environment in children or [folder]:
            if environment not in found:
                found.append(environment)
    return found


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.views.diagnostics import print_error
    from reconciler.errors import SpecError
    from reconciler.spec.loader import load_environment

    failed = 0
    environments = expand(args.environments)
    for environment in environments:
        try:
            desired = load_environment(environment)
        except SpecError as error:
            if len(environments) == 1:
                raise
            print_error(error, args.format)
            failed += 1
            continue
        promoted = f" ({len(desired.promotions)} promoted)" if desired.promotions else ""
        counts = (f"{len(desired.models)} model(s), {len(desired.image_names)} image(s){promoted}, "
                  f"{len(desired.deployments)} deployment(s)")
        print(f"{display_path(environment)}: valid ({desired.environment.provider} provider; {counts})")
    return exit_codes.ERROR if failed else exit_codes.OK
