"""``reconciler schema [KIND]``: print the JSON Schemas, for editors and other tools."""

from __future__ import annotations

import argparse
import json

from reconciler.cli import exit_codes
from reconciler.spec.schemas import KINDS, load_schema, schema_path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "schema", help="print the JSON Schema of a spec kind",
        description="Print the JSON Schema (draft 2020-12) of one kind, or of all kinds as one JSON object "
                    "keyed by kind. With --path, print where the schema files are.",
    )
    parser.add_argument("kind", nargs="?", choices=[k.lower() for k in KINDS], help="the kind (default: all)")
    parser.add_argument("--path", action="store_true", help="print the schema file paths instead")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kinds = [k for k in KINDS if args.kind in (None, k.lower())]
    if args.path:
        for kind in kinds:
            print(schema_path(kind))
    elif args.kind:
        print(json.dumps(load_schema(kinds[0]), indent=2))
    else:
        print(json.dumps({kind: load_schema(kind) for kind in kinds}, indent=2))
    return exit_codes.OK
