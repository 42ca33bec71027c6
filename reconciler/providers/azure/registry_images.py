"""The images an environment built, read from its container registry's tags: what every image builder shares.

A builder (``ml.AzureMLImageBuilder``: Azure ML's ``Model.package``; ``acr_tasks.AcrTasksImageBuilder``: ACR
Tasks) only differs in how it builds. Where images land and how they are listed, looked up and deleted is here,
once: both push ``<login server>/<name>:<label>`` into the workspace's registry, so switching builders lists
the same images and rebuilds nothing.

REST calls: ``list_owned`` one ACR token for all names (``POST /oauth2/exchange``, ``POST /oauth2/token``, see
``acr_token``), then per name one ``GET /acr/v1/{name}/_tags`` (+ ``Link`` pages of 100), at most
``LIST_WORKERS`` at a time; ``get`` one ``GET /acr/v1/{name}/_tags``; ``delete`` one
``DELETE /acr/v1/{name}/_tags/{label}`` (after the SDK's own token dance: deletes are rare).
"""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.core.planner import IMAGE_LABEL_LENGTH
from reconciler.errors import PermanentProviderError
from reconciler.model.plan import DesiredPromotion
from reconciler.model.state import ImageVersion
from reconciler.providers.azure.acr_token import AcrTokens
from reconciler.providers.azure.retry import Retrier
from reconciler.providers.base import Progress

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

LABEL = re.compile(rf"[0-9a-f]{{{IMAGE_LABEL_LENGTH}}}")


class RegistryTarget(Protocol):
    """Where images are built and pushed: the workspace's container registry (``ml.WorkspaceConnection`` is
    one), with the credential and the retrier every call goes through."""

    credential: TokenCredential
    retrier: Retrier

    @property
    def registry(self) -> str:
        """The registry's login server (``properties.loginServer``)."""

    @property
    def registry_id(self) -> str:
        """The registry's ARM id ('' when the workspace has none)."""


class RegistryImages:
    """``list_owned``, ``get``, ``delete`` and ``promote`` of the ``ml_api.ImageBuilder`` protocol, on the
    registry's tags (``azure-containerregistry``, retries off: the retrier alone repeats)."""

    LIST_WORKERS = 8  # tag listings in flight at once: a round trip each, and ACR's read limits are far above

    def __init__(self, target: RegistryTarget, environment: str) -> None:
        self._target = target
        self._environment = environment

    @property
    def registry(self) -> str:
        return self._target.registry

    @cached_property
    def _client(self) -> Any:
        from azure.containerregistry import ContainerRegistryClient

        stats = self._target.retrier.stats
        return ContainerRegistryClient(f"https://{self.registry}", self._target.credential, retry_total=0,
                                       raw_response_hook=lambda response: stats.count_http("acr"))

    @cached_property
    def _tokens(self) -> AcrTokens:
        return AcrTokens(self.registry, self._target.credential, self._target.retrier)

    def list_owned(self, names: list[str]) -> list[ImageVersion]:
        repositories = sorted(set(names))
        if not repositories:
            return []
        with ThreadPoolExecutor(max_workers=self.LIST_WORKERS, thread_name_prefix="acr-tags") as pool:
            # One token for them all, and the client (its import and construction, no request) beside it, before
            # the listings start.
            client = pool.submit(lambda: self._client)
            self._tokens.authorization(repositories)
            client.result()
            listed = list(pool.map(self._tags, repositories))
        return [self._to_image(name, tag) for name, tags in zip(repositories, listed, strict=True)
                for tag in tags if LABEL.fullmatch(tag.name)]

    def get(self, name: str, label: str) -> ImageVersion | None:
        tag = next((t for t in self._tags(name) if t.name == label), None)
        return self._to_image(name, tag) if tag is not None and LABEL.fullmatch(label) else None

    def digest(self, name: str, label: str) -> str | None:
        """The manifest digest of ``name:label`` (what a promotion from this environment copies), or None."""
        tag = next((t for t in self._tags(name) if t.name == label), None)
        return str(tag.digest) if tag is not None and LABEL.fullmatch(label) else None

    def promote(self, promotion: DesiredPromotion, tags: dict[str, str], progress: Progress) -> None:
        """ACR's import (``promotion.import_image``), whichever builder builds this environment's own images;
        registry tags carry no labels (``tags`` are unused)."""
        from reconciler.providers.azure.promotion import import_image

        import_image(self._target, promotion, progress, lambda: self.digest(promotion.spec.name, promotion.label))

    def _tags(self, repository: str) -> list[Any]:
        from azure.core.exceptions import ResourceNotFoundError

        def fetch() -> list[Any]:
            try:
                return list(self._client.list_tag_properties(repository,
                                                             headers=self._tokens.authorization([repository])))
            except ResourceNotFoundError:
                return []  # nothing was ever built under this name

        return self._target.retrier.call(fetch, what=f"image/{repository}", write=False)

    def _to_image(self, name: str, tag: Any) -> ImageVersion:
        built = tag.last_updated_on or tag.created_on  # a rebuilt label is pushed again
        return ImageVersion(name=name, label=tag.name, fingerprint=None, reference=f"{self.registry}/{name}:{tag.name}",
                            owner=self._environment, created=built.astimezone(timezone.utc).isoformat())

    def delete(self, version: ImageVersion) -> None:
        what = f"image/{version.name}:{version.label}"
        if not LABEL.fullmatch(version.label):
            raise PermanentProviderError("not an image label edge-reconciler builds: left in place", resource=what)
        # Only the tag: its manifest may carry other tags, and untagged manifests are the registry's
        # retention policy's business.
        from azure.core.exceptions import ResourceNotFoundError

        def delete() -> None:
            with contextlib.suppress(ResourceNotFoundError):  # gone already: a repeat after a lost answer
                self._client.delete_tag(version.name, version.label)

        self._target.retrier.call(delete, what=what, write=True, repeatable=True)

    def close(self) -> None:
        if "_client" in self.__dict__:
            self.__dict__.pop("_client").close()
