"""How a resource says it is managed by edge-reconciler, and by which environment.

Every resource the reconciler creates carries these tags (models), properties (images)
or labels (deployments). Anything without them is "unmanaged": listed, never changed.
Providers strip these keys before they report tags and labels, so plans only ever diff
what the user declared.
"""

MANAGED_BY = "managed-by"
MANAGED_BY_VALUE = "edge-reconciler"
ENVIRONMENT = "edge-reconciler.environment"
NAME = "edge-reconciler.name"
FINGERPRINT = "edge-reconciler.fingerprint"

RESERVED_KEYS = frozenset({MANAGED_BY, ENVIRONMENT, NAME, FINGERPRINT})


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
