"""``reconciler plan ENV_DIR``: show what apply would change; optionally save the plan."""

from __future__ import annotations

import argparse
import sys
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
    add_behaviour_arguments(parser)
    parser.set_defaults(run=run)


def add_behaviour_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-behaviour", action="store_true",
                        help="do not run the samples of new image versions (emergencies; the plan says so)")
    parser.add_argument("--python", type=Path, metavar="PATH",
                        help="run the samples with this interpreter instead of cached virtualenvs")


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.commands.test import stop_on_sigterm
    from reconciler.cli.progress import TerminalProgress
    from reconciler.cli.views import plan as plan_view
    from reconciler.cli.views.diagnostics import print_backend_usage
    from reconciler.engine import BehaviourOptions, Engine

    behaviour = BehaviourOptions(skip=args.skip_behaviour, python=args.python)
    with stop_on_sigterm(), Engine(args.environment,
                                   TerminalProgress(quiet=args.quiet or args.format != "text")) as engine:
        plan = engine.plan(prune=args.prune, behaviour=behaviour)
        usage, throttling = engine.query_usage(), engine.throttling()
    print_backend_usage(usage, throttling)
    environment_dir = display_path(args.environment)
    if args.format == "json":
        print(plan_view.render_json(plan, environment_dir), end="")
    elif args.format == "markdown":
        print(plan_view.render_markdown(plan), end="")
    else:
        print(plan_view.render_text(plan), end="")
    if args.out:
        from reconciler.cli import planfile  # and the plan's JSON form: only a saved plan needs them

        planfile.save(args.out, plan, environment_dir)
        if args.format == "text":
            print(f"\nSaved the plan to {args.out}. Apply exactly this plan with: reconciler apply {args.out}")
    if plan.behaviour is not None and plan.behaviour.failures:
        for failure in plan.behaviour.failures:
            print(f"error: behaviour gate exceeded: {failure}", file=sys.stderr)
        print("error: the plan fails its behaviour gates; fix the model or the gates (spec.gates), or plan with "
              "--skip-behaviour in an emergency", file=sys.stderr)
        return exit_codes.ERROR
    if args.detailed_exitcode and plan.has_changes:
        return exit_codes.CHANGES
    return exit_codes.OK
