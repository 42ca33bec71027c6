"""The commands, in the order ``reconciler --help`` lists them."""

from reconciler.cli.commands import (
    apply,
    device,
    doctor,
    drift,
    plan,
    rollout,
    rotate,
    schema,
    serve,
    test,
    unlock,
    validate,
)

COMMANDS = [validate, plan, apply, rollout, drift, rotate, unlock, doctor, device, schema, test, serve]
