"""``reconciler drift ENV_DIR``: what changed outside git, and how rollouts are doing."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "drift", help="report differences between the specs and the actual state (exit 2 on drift)",
        description="Compare the actual state with the specs: fields edited by hand, resources deleted out of "
                    "band, owned resources no longer in the specs, deployments shadowed by an unmanaged "
                    "higher-priority deployment; plus rollout health. Exit 0 without drift, 2 with drift.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.progress import TerminalProgress
    from reconciler.cli.views import drift as drift_view
    from reconciler.cli.views.diagnostics import print_backend_usage
    from reconciler.engine import Engine

    with Engine(args.environment, TerminalProgress(quiet=args.quiet or args.format != "text")) as engine:
        report = engine.drift()
        usage, throttling = engine.query_usage(), engine.throttling()
    print_backend_usage(usage, throttling)
    if args.format == "json":
        print(drift_view.render_json(report), end="")
    elif args.format == "markdown":
        print(drift_view.render_markdown(report), end="")
    else:
        print(drift_view.render_text(report), end="")
    return exit_codes.CHANGES if report.has_drift else exit_codes.OK
