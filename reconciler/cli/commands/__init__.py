"""The commands, in the order ``reconciler --help`` lists them."""

from reconciler.cli.commands import (
    apply,
    device,
    doctor,
    drift,
    gc,
    importing,
    plan,
    rollout,
    rotate,
    schema,
    serve,
    test,
    unlock,
    validate,
    where,
)

COMMANDS = [validate, plan, apply, rollout, drift, where, importing, rotate, unlock, doctor, device, schema, test,
            serve, gc]
