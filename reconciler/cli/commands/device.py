"""``reconciler device ENV_DIR add|list|tag|show|report|remove``: the local backend's simulated devices.

Devices are what deployments target: their twin tags decide which deployments reach them,
by IoT Hub's rules. ``show`` prints the modules a device runs and the deployment each one
comes from, which is the quickest way to see a layered deployment or a priority at work.
Only the local backend has simulated devices; real ones are managed in IoT Hub.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.cli import exit_codes
from reconciler.errors import ReconcilerError
from reconciler.spec.paths import display_path

if TYPE_CHECKING:
    from reconciler.model.specs import JSON
    from reconciler.providers.base import DeviceSimulator

Action = Callable[["DeviceSimulator", argparse.Namespace], int]


def _tag(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "device", help="simulated devices of the local backend",
        description="Add, tag, list, show and remove the simulated devices of a local environment. "
                    "Deployments reach devices through their tags (the target condition).",
    )
    parser.add_argument("environment", type=Path, metavar="ENV_DIR", help="an environments/<name> folder")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="register a device", description="Register a device with twin tags.")
    add.add_argument("name", metavar="NAME", help="the device id")
    add.add_argument("--tag", dest="tags", action="append", type=_tag, default=[], metavar="KEY=VALUE",
                     help="a twin tag (repeatable); values are strings")
    add.add_argument("--exist-ok", action="store_true",
                     help="if the device exists, set these tags on it instead of failing (for scripts)")
    add.set_defaults(device_action=_add)

    listing = actions.add_parser("list", help="list the devices and their tags")
    listing.set_defaults(device_action=_list)

    tag = actions.add_parser("tag", help="set or remove tags of a device",
                             description="Set tags (KEY=VALUE) and remove others (--untag KEY).")
    tag.add_argument("name", metavar="NAME", help="the device id")
    tag.add_argument("tags", nargs="*", type=_tag, metavar="KEY=VALUE", help="tags to set")
    tag.add_argument("--untag", action="append", default=[], metavar="KEY", help="a tag to remove (repeatable)")
    tag.set_defaults(device_action=_tag_device)

    show = actions.add_parser("show", help="the modules a device runs and where each comes from")
    show.add_argument("name", metavar="NAME", help="the device id")
    show.set_defaults(device_action=_show)

    report = actions.add_parser(
        "report", help="set what a device reports (module status, reported properties)",
        description="Set the status the device's IoT Edge runtime reports for a module (applied: not reported "
                    "yet; success; failed; clear: back to the default), and reported properties that target "
                    "conditions and custom metrics read (KEY=VALUE; a number, true, false or null is JSON; "
                    "null removes the property). A device tag failImages=GLOB makes the device fail every "
                    "module whose image matches GLOB.")
    report.add_argument("name", metavar="NAME", help="the device id")
    report.add_argument("--module", action="append", default=[], metavar="MODULE",
                        help="the module whose status to set (repeatable)")
    report.add_argument("--status", choices=["applied", "success", "failed", "clear"],
                        help="the status to report for each --module")
    report.add_argument("--reported", action="append", type=_tag, default=[], metavar="KEY=VALUE",
                        help="a reported property (repeatable)")
    report.set_defaults(device_action=_report)

    remove = actions.add_parser("remove", help="remove a device")
    remove.add_argument("name", metavar="NAME", help="the device id")
    remove.set_defaults(device_action=_remove)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.engine import Engine

    with Engine(args.environment) as engine:
        action: Action = args.device_action
        return action(engine.devices(), args)


def _add(devices: DeviceSimulator, args: argparse.Namespace) -> int:
    from reconciler.cli.views.devices import format_tags

    tags = dict(args.tags)
    if args.exist_ok and devices.exists(args.name):
        devices.tag(args.name, tags)
        print(f"Device {args.name} exists; tags set: {format_tags(tags)}")
        return exit_codes.OK
    devices.add([(args.name, tags)])
    print(f"Added device {args.name}: {format_tags(tags)}")
    return exit_codes.OK


def _list(devices: DeviceSimulator, args: argparse.Namespace) -> int:
    from reconciler.cli.views.devices import device_list

    found = devices.list()
    if not found:
        print(f"No devices. Add one with: reconciler device {display_path(args.environment)} add NAME --tag KEY=VALUE")
        return exit_codes.OK
    print(device_list(found))
    return exit_codes.OK


def _tag_device(devices: DeviceSimulator, args: argparse.Namespace) -> int:
    from reconciler.cli.views.devices import format_tags

    if not args.tags and not args.untag:
        raise ReconcilerError("nothing to change: give KEY=VALUE tags to set and/or --untag KEY")
    device = devices.tag(args.name, dict(args.tags), args.untag)
    print(f"{device.id}: {format_tags(device.tags)}")
    return exit_codes.OK


def _show(devices: DeviceSimulator, args: argparse.Namespace) -> int:
    from reconciler.cli.views.devices import device_modules

    print(device_modules(devices.show(args.name)))
    return exit_codes.OK


def _reported_value(text: str) -> JSON:
    try:
        value: JSON = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (int, float, bool)) else text


def _report(devices: DeviceSimulator, args: argparse.Namespace) -> int:
    if bool(args.module) != bool(args.status):
        raise ReconcilerError("give --module and --status together (the status to report for those modules)")
    if not args.module and not args.reported:
        raise ReconcilerError("nothing to report: give --module M --status S and/or --reported KEY=VALUE")
    status = None if args.status == "clear" else args.status
    device = devices.report(args.name, dict.fromkeys(args.module, status),
                            {key: _reported_value(value) for key, value in args.reported})
    what = [f"{module}: {args.status}" for module in args.module]
    what += [f"reported {key}={value}" for key, value in args.reported]
    print(f"{device.id}: {', '.join(what)}")
    return exit_codes.OK


def _remove(devices: DeviceSimulator, args: argparse.Namespace) -> int:
    devices.remove(args.name)
    print(f"Removed device {args.name}")
    return exit_codes.OK
