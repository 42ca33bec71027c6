"""``reconciler apply ENV_DIR | PLAN.json``: make the actual state match the specs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.cli import exit_codes
from reconciler.cli.commands.plan import add_behaviour_arguments
from reconciler.cli.commands.test import stop_on_sigterm
from reconciler.errors import Aborted, ReconcilerError

if TYPE_CHECKING:
    from reconciler.model.plan import Plan


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "apply", help="apply the changes (from the specs, or a saved plan)",
        description="Plan under the environment's lock and apply the changes, in dependency order. "
                    "Given a saved plan file, apply it only if the specs and the actual state are unchanged.",
    )
    parser.add_argument("target", type=Path, metavar="ENV_DIR|PLAN.json",
                        help="an environments/<name> folder, or a plan saved with `plan --out`")
    parser.add_argument("--auto-approve", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--prune", action="store_true",
                        help="delete owned resources that are no longer in the specs")
    parser.add_argument("--rollouts-only", action="store_true",
                        help="take only the rollout steps that are due (advance, complete, roll back, pause) "
                             "and change nothing else; for the scheduled rollout workflow")
    add_behaviour_arguments(parser)
    parser.set_defaults(run=run)


def _confirm(plan: Plan) -> bool:
    if not sys.stdin.isatty():
        raise Aborted("apply needs confirmation and there is no terminal to ask on; "
                      "review the plan and run again with --auto-approve (or apply a saved plan)")
    from reconciler.cli.views import plan as plan_view

    print(plan_view.render_text(plan))
    answer = input("Apply these changes? Only 'yes' is accepted: ")
    return answer.strip() == "yes"


def run(args: argparse.Namespace) -> int:
    from reconciler.cli import planfile
    from reconciler.cli.progress import TerminalProgress
    from reconciler.cli.views.diagnostics import print_backend_usage
    from reconciler.engine import BehaviourOptions, Engine

    saved = planfile.load(args.target) if args.target.is_file() else None
    if saved and (args.rollouts_only or args.prune):
        raise ReconcilerError("--rollouts-only and --prune apply to an environment folder, not to a saved plan "
                              "(the plan says what it does)")
    if args.rollouts_only and args.prune:
        raise ReconcilerError("--rollouts-only changes nothing but rollouts: it cannot be combined with --prune")
    environment_dir = Path(saved.environment_dir) if saved else args.target
    # A saved plan was reviewed already: applying it is the approval.
    confirm = None if (args.auto_approve or saved) else _confirm
    # Rollout steps build no image: no samples to run.
    behaviour = None if args.rollouts_only else BehaviourOptions(skip=args.skip_behaviour, python=args.python)
    with stop_on_sigterm(), Engine(environment_dir, TerminalProgress(quiet=args.quiet)) as engine:
        result = engine.apply(prune=args.prune, saved=saved, confirm=confirm, rollouts_only=args.rollouts_only,
                              behaviour=behaviour)
        throttling = engine.throttling()
    print_backend_usage(None, throttling)
    if args.rollouts_only:
        from reconciler.cli.progress import interactive
        from reconciler.cli.views import rollouts

        for change in result.applied:
            print(f"{change.action.symbol} {change.key}: {change.reason}")
        print(rollouts.render_text(result.plan.rollouts, bars=not args.quiet and interactive(sys.stdout)), end="")
        print(f"Rollout steps taken: {len(result.applied)}.")
        return exit_codes.OK
    if not result.applied:
        print("No changes. The actual state matches the specs.")
        return exit_codes.OK
    plan = result.plan
    source = "the saved plan" if result.from_saved_plan else "a fresh plan"
    print(f"Apply complete ({source}): {plan.summary.removeprefix('Plan: ')}")
    return exit_codes.OK
