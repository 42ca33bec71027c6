"""``reconciler rollout ENV_DIR status``: where each staged rollout stands.

Per deployment: the ring it is in, the devices each ring reaches, each gate's figure against its
threshold, and the time left in the ring. The steps themselves are taken by ``reconciler apply``
(``--rollouts-only`` on a schedule: see .github/workflows/rollout.yml).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rollout", help="staged rollouts: where each stands",
        description="Show the staged rollouts of an environment: ring, devices per ring, gates and time left. "
                    "`reconciler apply ENV_DIR --rollouts-only` takes the steps that are due.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="where each rollout stands (exit 0)")
    status.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.progress import TerminalProgress
    from reconciler.cli.views import rollouts
    from reconciler.engine import Engine

    with Engine(args.environment, TerminalProgress(quiet=args.format != "text")) as engine:
        statuses = engine.rollout_status()
    print(rollouts.render_json(statuses) if args.format == "json" else rollouts.render_text(statuses), end="")
    return exit_codes.OK
