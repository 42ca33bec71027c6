"""The commands, in the order ``reconciler --help`` lists them."""

from reconciler.cli.commands import apply, device, doctor, drift, plan, rollout, rotate, schema, unlock, validate, where

COMMANDS = [validate, plan, apply, rollout, drift, where, rotate, unlock, doctor, device, schema]
