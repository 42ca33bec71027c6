"""Target conditions as backends take them: parsed by IoT Hub's grammar (``hub.conditions``), or refused with the
error a provider reports. Its own module: counting a plan's devices needs it, not the apply path."""

from __future__ import annotations

from reconciler.errors import PermanentProviderError
from reconciler.hub.conditions import Condition, ConditionError, parse


def checked_condition(text: str, resource: str | None = None) -> Condition:
    """A target condition parsed, or refused as the hub would refuse it."""
    try:
        return parse(text)
    except ConditionError as exc:
        raise PermanentProviderError(f"invalid target condition {text!r}: {exc}", resource=resource) from exc
