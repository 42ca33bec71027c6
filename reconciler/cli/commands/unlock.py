"""``reconciler force-unlock ENV_DIR LOCK_ID``: remove a lock left by a run that died."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reconciler.cli import exit_codes
from reconciler.errors import Aborted


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "force-unlock", help="remove the apply lock that a run which died left behind",
        description="Remove the environment's apply lock, but only if its lock id is LOCK_ID (the id the "
                    "'another apply holds the lock' message prints). A lock renewed or taken over meanwhile "
                    "stays. Only do this when you are sure the run that holds it is not running any more: two "
                    "applies at once can leave the environment half-changed.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("lock_id", metavar="LOCK_ID", help="the lock id from the lock message")
    parser.add_argument("--force", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(run=run)


def _confirm(lock_id: str) -> None:
    if not sys.stdin.isatty():
        raise Aborted("force-unlock needs confirmation and there is no terminal to ask on; run again with --force "
                      "if you are sure no apply holds this lock")
    print(f"Remove the apply lock {lock_id}? An apply that still runs would then race with the next one.")
    if input("Only 'yes' is accepted: ").strip() != "yes":
        raise Aborted("Force-unlock cancelled: the lock was not removed.")


def run(args: argparse.Namespace) -> int:
    from reconciler.engine import Engine

    with Engine(args.environment) as engine:
        if not args.force:
            _confirm(args.lock_id)
        info = engine.force_unlock(args.lock_id)
    print(f"Removed the apply lock {args.lock_id} of environment {engine.desired.environment.name}, held by "
          f"{info.holder} since {info.since}.")
    return exit_codes.OK
