"""How a resource says it is managed by edge-reconciler, and by which environment.

Every resource the reconciler creates carries these tags (models), properties (images)
or labels (deployments). Anything without them is "unmanaged": listed, never changed.
Providers strip these keys before they report tags and labels, so plans only ever diff
what the user declared.
"""

from reconciler.model.state import RolloutMark

MANAGED_BY = "managed-by"
MANAGED_BY_VALUE = "edge-reconciler"
ENVIRONMENT = "edge-reconciler.environment"
NAME = "edge-reconciler.name"
FINGERPRINT = "edge-reconciler.fingerprint"

# A staged rollout's state, kept on the deployments themselves so any runner can continue it.
ROLLOUT_RING = "edge-reconciler.rollout.ring"  # on a candidate: the ring it serves
ROLLOUT_SINCE = "edge-reconciler.rollout.since"  # on a candidate: when it entered that ring (ISO 8601 UTC)
ROLLOUT_PAUSED = "edge-reconciler.rollout.paused"  # on a candidate held after a failed gate: the gate
ROLLOUT_FAILED = "edge-reconciler.rollout.failed"  # on the stable version: content hash of a failed candidate
ROLLOUT_FAILED_RING = "edge-reconciler.rollout.failed-ring"  # ... the ring it failed in
ROLLOUT_FAILED_GATE = "edge-reconciler.rollout.failed-gate"  # ... and the gate it failed
ROLLOUT_KEYS = frozenset({ROLLOUT_RING, ROLLOUT_SINCE, ROLLOUT_PAUSED, ROLLOUT_FAILED, ROLLOUT_FAILED_RING,
                          ROLLOUT_FAILED_GATE})

OWNERSHIP_KEYS = frozenset({MANAGED_BY, ENVIRONMENT, NAME, FINGERPRINT})
RESERVED_KEYS = OWNERSHIP_KEYS | ROLLOUT_KEYS


def ownership_tags(environment: str, name: str, fingerprint: str) -> dict[str, str]:
    """The tags/labels to stamp on a resource created for ``environment``."""
    return {MANAGED_BY: MANAGED_BY_VALUE, ENVIRONMENT: environment, NAME: name, FINGERPRINT: fingerprint}


def owner_of(tags: dict[str, str]) -> str | None:
    """The environment that owns a resource with these tags, or None if unmanaged."""
    if tags.get(MANAGED_BY) != MANAGED_BY_VALUE:
        return None
    return tags.get(ENVIRONMENT)


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags without the reconciler's own keys."""
    return {k: v for k, v in tags.items() if k not in RESERVED_KEYS}


_MARK_KEYS = {"ring": ROLLOUT_RING, "since": ROLLOUT_SINCE, "paused": ROLLOUT_PAUSED, "failed": ROLLOUT_FAILED,
              "failed_ring": ROLLOUT_FAILED_RING, "failed_gate": ROLLOUT_FAILED_GATE}


def rollout_mark(labels: dict[str, str]) -> RolloutMark:
    """The rollout state a deployment's labels carry."""
    return RolloutMark(**{field: labels.get(key) for field, key in _MARK_KEYS.items()})


def rollout_labels(mark: RolloutMark) -> dict[str, str]:
    """The labels that carry ``mark`` (none for an empty mark)."""
    return {key: value for field, key in _MARK_KEYS.items() if (value := getattr(mark, field)) is not None}
