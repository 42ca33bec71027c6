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
fail on the tag the first one created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.errors import PermanentProviderError
from reconciler.model.plan import DesiredPromotion
from reconciler.model.state import ImageVersion
from reconciler.providers.azure.auth import registry_client
from reconciler.providers.azure.registry import REGISTRY_ID
from reconciler.providers.base import Progress

if TYPE_CHECKING:
    from reconciler.providers.azure.ml import WorkspaceConnection

IMPORT_MODE = "NoForce"


def import_image(connection: WorkspaceConnection, promotion: DesiredPromotion, progress: Progress,
                 imported: Any) -> None:
    """Copy ``promotion.source`` into the workspace registry of ``connection`` as ``<name>:<label>``.
    ``imported()`` returns the target tag as it is now (an ``ImageVersion``) or None."""
    from azure.mgmt.containerregistry.models import ImportImageParameters, ImportSource

    source = promotion.source
    name, label = promotion.spec.name, promotion.label
    what = f"image/{name}:{label}"
    target = REGISTRY_ID.search(connection.registry_id)
    if target is None:
        raise PermanentProviderError("the workspace has no container registry attached to import into",
                                     resource=f"workspace {connection.workspace_name}")
    if REGISTRY_ID.search(source.locator) is None:
        raise PermanentProviderError(f"environment {source.environment!r} names no registry to import from "
                                     f"({source.locator!r}); run `reconciler plan` again", resource=what)
    parameters = ImportImageParameters(
        source=ImportSource(resource_id=source.locator, source_image=f"{source.image}@{source.digest}"),
        target_tags=[f"{name}:{label}"], mode=IMPORT_MODE)
    progress.step(f"promoting image {name}:{label} from environment {source.environment} ({source.digest})")
    client = registry_client(connection.credential, target.group("sub"), connection.retrier.stats)

    def start() -> ImageVersion:
        client.registries.begin_import_image(target.group("rg"), target.group("name"), parameters).result()
        return ImageVersion(name, label, promotion.fingerprint, promotion.reference, None, "")

    def found() -> ImageVersion | None:
        version: ImageVersion | None = imported()
        return version

    try:
        connection.retrier.call(start, what=what, write=True, recover=found)
    finally:
        client.close()
