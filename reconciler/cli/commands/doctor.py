"""``reconciler doctor ENV_DIR``: check, against the backend itself, what an apply on the environment needs."""

from __future__ import annotations

import argparse
from pathlib import Path

from reconciler.cli import exit_codes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check credentials, roles, quotas and api-versions against the real backend (exit 1 if a "
                       "check fails)",
        description="Check what an apply needs, against the services themselves: the credentials and each role "
                    "(list deployments, read the registry, manage tokens, register models), the registries' login "
                    "servers, the IoT Hub's SKU, units, query quota and configuration slots, and the api-versions "
                    "in use. Read-only unless --write-probe. Exit 0 when every check passes, 1 when one fails.",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    parser.add_argument("--write-probe", action="store_true",
                        help="also create, read back and delete a throwaway deployment that targets no device and "
                             "embeds a dummy registry credential: shows whether the hub returns registry passwords "
                             "readable, and how metrics look right after a change")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.cli.views import doctor as doctor_view
    from reconciler.engine import Engine

    with Engine(args.environment) as engine:
        checks = engine.doctor(write_probe=args.write_probe)
        environment = engine.desired.environment
    if args.format == "json":
        print(doctor_view.render_json(environment.name, environment.provider, checks), end="")
    else:
        print(doctor_view.render_text(environment.name, environment.provider, checks), end="")
    return exit_codes.ERROR if doctor_view.failed(checks) else exit_codes.OK
