"""The commands, in the order ``reconciler --help`` lists them."""

from reconciler.cli.commands import apply, drift, plan, schema, validate

COMMANDS = [validate, plan, apply, drift, schema]
