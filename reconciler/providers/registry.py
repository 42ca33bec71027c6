"""Provider lookup by name. Imports are lazy: naming "azure" is what loads the Azure SDKs."""

from __future__ import annotations

import importlib

from reconciler.errors import PermanentProviderError
from reconciler.model.specs import EnvironmentSpec
from reconciler.providers.base import Provider

PROVIDERS: dict[str, str] = {
    "local": "reconciler.providers.local.provider:LocalProvider",
    "azure": "reconciler.providers.azure.provider:AzureProvider",
}


def open_provider(environment: EnvironmentSpec) -> Provider:
    """Instantiate the provider an environment names."""
    target = PROVIDERS.get(environment.provider)
    if target is None:
        known = ", ".join(sorted(PROVIDERS))
        raise PermanentProviderError(f"unknown provider {environment.provider!r} (known: {known})")
    module_name, _, class_name = target.partition(":")
    factory = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = factory(environment)
    return provider
