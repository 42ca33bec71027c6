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

from typing import Protocol

from reconciler.model.plan import DesiredImage
from reconciler.model.specs import ModelSpec
from reconciler.model.state import ImageVersion, ModelVersion
from reconciler.providers.base import Progress


class ModelRegistry(Protocol):
    """Registered model versions of one workspace."""

    def list_owned(self, environment: str) -> list[ModelVersion]:
        """Every version (of every model) that ``environment`` owns, filtered by the ownership tags on the
        server: one list call plus paging. Tags and properties are reported without the ownership keys."""

    def register(self, spec: ModelSpec, fingerprint: str, environment: str) -> ModelVersion:
        """Upload ``spec.path`` and register it as the next version of ``spec.name``, stamped as owned by
        ``environment`` with ``fingerprint``. Earlier versions stay. One call registers one version, even
        when its answer is lost or the SDK sends the request twice: what it created is looked up, and a
        twin is removed."""

    def update(self, version: ModelVersion, spec: ModelSpec) -> ModelVersion:
        """Set the description and the tags of an owned version to the spec's (tags the spec dropped are
        removed) and add the properties it does not have yet. Properties are add-only in Azure ML: when a
        declared property already has another value (``changed_properties``), raises
        ``PermanentProviderError`` before changing anything; register a new version instead. Refuses a
        version that is not owned."""

    def delete_all(self, name: str, environment: str) -> None:
        """Delete every version of ``name`` that ``environment`` owns; versions owned by others or by nobody
        stay. Idempotent: deleting what is already gone is not an error."""


class ImageBuilder(Protocol):
    """Scoring images built from registered models into the workspace's container registry.

    Images are owned by naming convention: every tag that looks like an image label (the first 12 hex
    digits of the image fingerprint, see ``core.planner.image_label``) in the repository of one of an
    environment's image names belongs to that environment. Registry tags cannot carry labels or
    annotations, so there is no stronger mark; environments that share a registry must not share image
    names. Tags of any other shape (``latest``, ``v1``) are never touched.
    """

    @property
    def registry(self) -> str:
        """Where images are pushed: ``<acr>.azurecr.io`` (``Snapshot.image_registry``)."""

    def list_owned(self, environment: str, names: list[str]) -> list[ImageVersion]:
        """The images built under ``names`` (repositories that do not exist yet have none): one list call per
        name, plus paging. The fingerprint is unknown (None) for listed images: only its label survives."""

    def build(self, image: DesiredImage, models: list[ModelVersion], environment: str,
              progress: Progress) -> ImageVersion:
        """Build ``image`` with the given model versions (the ones ``image.model_fingerprints`` names) and push
        it as ``<name>:<label>``; returns the image as ``list_owned`` will report it. Blocks until the build
        ends, reporting polls to ``progress``. A failed build raises ``PermanentProviderError`` whose message
        ends with the tail of the build log; a build still running at the time limit raises
        ``TransientProviderError`` (re-plan later: a finished build shows up as unchanged)."""

    def delete(self, version: ImageVersion) -> None:
        """Remove the image's tag (an owned one, as ``list_owned`` reported it). Idempotent."""

    def close(self) -> None:
        """Release connections. Safe to call twice."""


def changed_properties(version: ModelVersion, spec: ModelSpec) -> list[str]:
    """The declared property keys whose value differs on ``version``: these cannot change in place."""
    return sorted(k for k, v in spec.properties.items() if k in version.properties and version.properties[k] != v)
