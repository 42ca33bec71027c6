"""``reconciler plan ENV_DIR``: show what apply would change; optionally save the plan."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes
from reconciler.spec.paths import display_path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plan", help="show the changes apply would make",
        description="Compare the specs with the actual state and print the changes, in apply order.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("--out", type=Path, metavar="FILE", help="save the plan (JSON) for `reconciler apply FILE`")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    parser.add_argument("--prune", action="store_true",
                        help="delete owned resources that are no longer in the specs")
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help="exit 0 when there are no changes, 2 when there are, 1 on error")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli import planfile
    from reconciler.cli.progress import TerminalProgress
    from reconciler.cli.views import plan as plan_view
    from reconciler.engine import Engine

    with Engine(args.environment, TerminalProgress(quiet=args.quiet or args.format != "text")) as engine:
        plan = engine.plan(prune=args.prune)
    environment_dir = display_path(args.environment)
    if args.format == "json":
        print(plan_view.render_json(plan, environment_dir), end="")
    elif args.format == "markdown":
        print(plan_view.render_markdown(plan), end="")
    else:
        print(plan_view.render_text(plan), end="")
    if args.out:
        planfile.save(args.out, plan, environment_dir)
        if args.format == "text":
            print(f"\nSaved the plan to {args.out}. Apply exactly this plan with: reconciler apply {args.out}")
    if args.detailed_exitcode and plan.has_changes:
        return exit_codes.CHANGES
    return exit_codes.OK
