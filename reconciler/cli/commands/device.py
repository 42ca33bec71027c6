"""``reconciler device ENV_DIR add|list|tag|show|remove``: the local backend's simulated devices.

Devices are what deployments target: their twin tags decide which deployments reach them,
by IoT Hub's rules. ``show`` prints the modules a device runs and the deployment each one
comes from, which is the quickest way to see a layered deployment or a priority at work.
Only the local backend has simulated devices; real ones are managed in IoT Hub.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.cli import exit_codes
from reconciler.errors import ReconcilerError
from reconciler.model.specs import JSON
from reconciler.providers.local.devices import module_image
from reconciler.providers.local.provider import LocalProvider
from reconciler.spec.loader import load_environment
from reconciler.spec.paths import display_path

Action = Callable[[LocalProvider, argparse.Namespace], int]


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

    remove = actions.add_parser("remove", help="remove a device")
    remove.add_argument("name", metavar="NAME", help="the device id")
    remove.set_defaults(device_action=_remove)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    environment = load_environment(args.environment).environment
    if environment.provider != "local":
        raise ReconcilerError(
            f"{display_path(args.environment)} uses the {environment.provider!r} provider: simulated devices exist "
            "only on the local backend; manage real devices in IoT Hub")
    provider = LocalProvider(environment)
    try:
        action: Action = args.device_action
        return action(provider, args)
    finally:
        provider.close()


def format_tags(tags: dict[str, JSON]) -> str:
    if not tags:
        return "(no tags)"
    return ", ".join(f"{key}={value if isinstance(value, str) else json.dumps(value)}"
                     for key, value in sorted(tags.items()))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in (header, *rows))


def _add(provider: LocalProvider, args: argparse.Namespace) -> int:
    tags = dict(args.tags)
    if args.exist_ok and provider.store.device(args.name) is not None:
        provider.tag_device(args.name, tags)
        print(f"Device {args.name} exists; tags set: {format_tags(tags)}")
        return exit_codes.OK
    provider.add_device(args.name, tags)
    print(f"Added device {args.name}: {format_tags(tags)}")
    return exit_codes.OK


def _list(provider: LocalProvider, args: argparse.Namespace) -> int:
    devices = provider.list_devices()
    if not devices:
        print(f"No devices. Add one with: reconciler device {display_path(args.environment)} add NAME --tag KEY=VALUE")
        return exit_codes.OK
    rows = [(d.id, format_tags(d.tags) + ("  [reports failure]" if d.failing else "")) for d in devices]
    print(table(("DEVICE", "TAGS"), rows))
    return exit_codes.OK


def _tag_device(provider: LocalProvider, args: argparse.Namespace) -> int:
    if not args.tags and not args.untag:
        raise ReconcilerError("nothing to change: give KEY=VALUE tags to set and/or --untag KEY")
    device = provider.tag_device(args.name, dict(args.tags), args.untag)
    print(f"{device.id}: {format_tags(device.tags)}")
    return exit_codes.OK


def _show(provider: LocalProvider, args: argparse.Namespace) -> int:
    view = provider.device_view(args.name)
    print(f"Device {view.device.id}" + (" (reports failure)" if view.device.failing else ""))
    print(f"Tags: {format_tags(view.device.tags)}")
    print()
    if not view.modules:
        print("No deployment applies to this device: it runs no modules.")
        return exit_codes.OK
    rows = [(name, module_image(definition), deployment) for name, (deployment, definition) in view.modules.items()]
    print(table(("MODULE", "IMAGE", "FROM DEPLOYMENT"), rows))
    return exit_codes.OK


def _remove(provider: LocalProvider, args: argparse.Namespace) -> int:
    provider.remove_device(args.name)
    print(f"Removed device {args.name}")
    return exit_codes.OK
