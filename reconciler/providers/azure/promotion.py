"""Build once, promote, on Azure: ACR's import operation copies a built image between registries.

``POST .../registries/{target}/importImage`` (``ContainerRegistryManagementClient.registries.begin_import_image``,
a long-running operation: 202 + ``Location``, then polled) with ``ImportImageParameters``:

* ``source.resource_id``: the ARM id of the source environment's workspace registry (the registries may be in
  other resource groups or subscriptions: the caller needs pull rights on the source, as ``az acr import``);
* ``source.source_image``: ``<repository>@<digest>``, by digest, so the bytes copied are exactly the ones the
  plan showed, even if the source's tag moved since;
* ``target_tags``: ``<name>:<label>`` in the workspace registry of this environment, where builds are pushed;
* ``mode`` ``NoForce``: an existing tag is never overwritten (images are immutable).

ACR copies the manifest and its blobs; the manifest digest is the same in both registries. An import whose
answer was lost is looked up (the target tag exists) before it is sent again: a repeat with ``NoForce`` would
fail on the tag the first one created; a tag found with another digest is an error, never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reconciler.errors import PermanentProviderError
from reconciler.model.plan import DesiredPromotion
from reconciler.providers.azure.auth import registry_client
from reconciler.providers.azure.registry import REGISTRY_ID
from reconciler.providers.base import Progress

if TYPE_CHECKING:
    from reconciler.providers.azure.registry_images import RegistryTarget

IMPORT_MODE = "NoForce"


def import_image(connection: RegistryTarget, promotion: DesiredPromotion, progress: Progress,
                 imported: Callable[[], str | None]) -> None:
    """Copy ``promotion.source`` into the workspace registry of ``connection`` as ``<name>:<label>``.
    ``imported()`` returns the digest the target tag has now, or None."""
    from azure.mgmt.containerregistry.models import ImportImageParameters, ImportSource

    source = promotion.source
    name, label = promotion.spec.name, promotion.label
    what = f"image/{name}:{label}"
    target = REGISTRY_ID.search(connection.registry_id)
    if target is None:
        raise PermanentProviderError("the workspace has no container registry attached to import into",
                                     resource=what)
    if REGISTRY_ID.search(source.locator) is None:
        raise PermanentProviderError(f"environment {source.environment!r} names no registry to import from "
                                     f"({source.locator!r}); run `reconciler plan` again", resource=what)
    parameters = ImportImageParameters(
        source=ImportSource(resource_id=source.locator, source_image=f"{source.image}@{source.digest}"),
        target_tags=[f"{name}:{label}"], mode=IMPORT_MODE)
    progress.step(f"promoting image {name}:{label} from environment {source.environment} ({source.digest})")
    client = registry_client(connection.credential, target.group("sub"), connection.retrier.stats)
    attempts = 0

    def done() -> bool | None:
        """True when the target tag has the source's digest (an import whose answer was lost), else None."""
        digest = imported()
        if digest is None:
            return None
        if digest != source.digest:
            raise PermanentProviderError(f"the registry has {name}:{label} already, with another digest ({digest}); "
                                         "images are immutable: delete that tag to promote "
                                         f"{source.digest}", resource=what)
        return True

    def start() -> bool:
        # Every attempt after the first looks first: a lost answer is not always told from an unsent request
        # (behind a proxy both end as a dropped connection), and a repeat onto the tag fails with NoForce.
        nonlocal attempts
        attempts += 1
        if attempts > 1 and done():
            return True
        client.registries.begin_import_image(target.group("rg"), target.group("name"), parameters).result()
        return True

    try:
        connection.retrier.call(start, what=what, write=True, repeatable=True, recover=done)
    finally:
        client.close()
