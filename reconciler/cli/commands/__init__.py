"""The commands, in the order ``reconciler --help`` lists them."""

from reconciler.cli.commands import apply, device, drift, plan, schema, validate

COMMANDS = [validate, plan, apply, drift, device, schema]
