"""What the Azure provider needs from Azure Machine Learning: a model registry and an image builder.

Two small protocols, so that the azureml-core (SDK v1) implementation in ``ml.py`` can be replaced by an
``azure-ai-ml`` (SDK v2) one without touching the provider: SDK v1 is out of support since 30 June 2026.
Nothing here imports an SDK.

Failure semantics (both protocols, on top of ``providers.base``):

* Methods raise only ``reconciler.errors`` types: ``TransientProviderError`` when the same call may succeed
  later, ``PermanentProviderError`` otherwise, with a message that says what to do.
* Nothing is modified or deleted that the given environment does not own. Models carry the ownership keys
  of ``model.ownership`` in their tags (the fingerprint in their immutable properties); images are owned by
  naming convention (see ``ImageBuilder``).
* Reads are bounded: one list call per kind (models) or per image repository, plus paging; never one call
  per version.
* Writes are safe to repeat after a lost answer, by design (``retry.Retrier``'s ``repeatable`` and
  ``recover``): a register or a build start whose answer was lost first looks for what it may have
  created. What still fails is recovered by re-planning, which sees what exists.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Protocol, runtime_checkable

from reconciler.model.specs import RegisteredSource
from reconciler.model.state import ImageVersion, ModelVersion
from reconciler.providers.base import BuiltImage, ImageStore, ModelStore


class ModelRegistry(ModelStore, Protocol):
    """Registered model versions of one workspace, for one environment: the apply path's ``ModelStore``
    plus the snapshot's listing.

    ``register`` registers one version per call, even when its answer is lost or the SDK sends the
    request twice: what it created is looked up, and a twin is removed. ``update`` changes tags and the
    description in place and only adds properties (Azure ML never changes one)."""

    def list_owned(self, names: Collection[str] = ()) -> list[ModelVersion]:
        """Every version (of every model) the environment owns. Tags and properties are reported without the
        ownership keys. ``names``, the model names the specs declare, are always looked at; an adapter that
        cannot filter versions across names (SDK v2) reads the others only where its ownership index says so.
        SDK v1: one list call filtered by the ownership tags on the server, plus paging."""

    def referenced(self, sources: list[RegisteredSource]) -> list[ModelVersion]:
        """The versions specs name as their source (``spec.source.registered``), whoever owns them, each with a
        fingerprint (for one no reconciler registered: see ``workspace.identity_fingerprint``); those that do not
        exist are left out. One read per source: specs name few."""


@runtime_checkable
class OwnedNamesIndex(Protocol):
    """A model registry that keeps an index of the model names an environment owns versions of (SDK v2: a
    marker in the tags of each such model container), so a snapshot need not read every model name of the
    workspace. The index is brought up to date at the start of an apply, before any change."""

    def index_owned_names(self) -> None:
        """Mark every model name the last listing found owned versions under and not yet marked."""


class ImageBuilder(ImageStore, Protocol):
    """Scoring images built from registered models into the workspace's container registry.

    Images are owned by naming convention: every tag that looks like an image label (the first 12 hex
    digits of the image fingerprint, see ``core.planner.image_label``) in the repository of one of an
    environment's image names belongs to that environment. Registry tags cannot carry labels or
    annotations, so there is no stronger mark; environments that share a registry must not share image
    names. Tags of any other shape (``latest``, ``v1``) are never touched. A failed build raises
    ``PermanentProviderError`` ending with the tail of the build log; a build still running at the time
    limit raises ``TransientProviderError`` (re-plan later: a finished build shows up as unchanged).
    """

    @property
    def registry(self) -> str:
        """Where images are pushed: the registry's login server (``Snapshot.image_registry``)."""

    def list_owned(self, names: list[str]) -> list[ImageVersion]:
        """The images built under ``names`` (repositories that do not exist yet have none): one list call per
        name, plus paging. The fingerprint is unknown (None) for listed images: only its label survives."""

    def digest(self, name: str, label: str) -> str | None:
        """The manifest digest of image ``name:label``, or None when it was not built: one tag listing."""

    def close(self) -> None:
        """Release connections. Safe to call twice."""

    def built_files(self, name: str, label: str, destination: Path) -> BuiltImage:
        """``providers.base.BuiltImageFiles`` for an image this builder built: what ``build`` recorded of its
        inputs (the application, the conda file, the model versions), written under ``destination``; the model
        files are fetched only when ``copy`` is called. ``PermanentProviderError`` when nothing was recorded for
        this label (an image built before builds recorded their inputs, or by another tool)."""
