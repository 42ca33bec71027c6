"""The commands, in the order ``reconciler --help`` lists them."""

from reconciler.cli.commands import schema, validate

COMMANDS = [validate, schema]
