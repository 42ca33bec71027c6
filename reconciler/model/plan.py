"""The plan: what an apply will do, as a value.

A ``Plan`` is computed by the pure planner from the desired state and one snapshot of the
actual state. It is rendered for people (text, markdown), saved as JSON for a later apply,
and executed change by change by a provider. It never contains a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from reconciler.model.behaviour import BehaviourReport
from reconciler.model.diagnostics import Diagnostic
from reconciler.model.specs import JSON, DeploymentSpec, ImageSpec, ModelSpec, ResourceKey
from reconciler.model.state import ImageVersion, LiveDeployment, ModelVersion


class Action(str, Enum):
    """What happens to one resource. The symbols are Terraform's.

    ``NEW_VERSION`` is the versioned kinds' change (models, images): a new version is
    registered or built and the old one stays; it counts as a change, shown ``~``."""

    CREATE = "create"
    UPDATE = "update"
    NEW_VERSION = "new-version"
    REPLACE = "replace"
    DELETE = "delete"

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "new-version": "~", "replace": "-/+", "delete": "-"}[self.value]

    @property
    def is_change(self) -> bool:
        """Counted as "to change" in summaries: an update in place or a new version."""
        return self in (Action.UPDATE, Action.NEW_VERSION)


@dataclass(frozen=True)
class FieldChange:
    """One differing field. ``path`` is dotted (``tags.team``, ``modules.scorer.image``);
    ``before`` / ``after`` are None when the field is absent on that side."""

    path: str
    before: JSON
    after: JSON


@dataclass(frozen=True)
class DesiredModel:
    spec: ModelSpec
    fingerprint: str


@dataclass(frozen=True)
class DesiredImage:
    spec: ImageSpec
    fingerprint: str
    label: str  # derived from the fingerprint: the same inputs always give the same label
    reference: str  # "<registry>/<name>:<label>"
    model_fingerprints: dict[str, str]  # model name -> the fingerprint of the version to package


@dataclass(frozen=True)
class DesiredDeployment:
    """A deployment as it will be written to the hub.

    ``content`` is the full ``modulesContent`` with each registry password replaced by a
    placeholder (see ``core.manifest.password_placeholder``): the provider fills them in at
    apply time, fetched from the registry, and nowhere else.
    """

    spec: DeploymentSpec
    id: str  # "<name>-<content hash>": content is immutable, so new content needs a new id
    content_hash: str
    content: dict[str, JSON]
    target_condition: str
    registries: tuple[str, ...]  # names of registries whose credentials the content embeds


Desired = DesiredModel | DesiredImage | DesiredDeployment
Actual = ModelVersion | ImageVersion | LiveDeployment


@dataclass(frozen=True)
class Change:
    """One resource's change.

    ``desired`` is set for create, update, new version and replace; ``actual`` for update,
    new version, replace and delete.
    """

    key: ResourceKey
    action: Action
    reason: str
    fields: tuple[FieldChange, ...] = ()
    desired: Desired | None = None
    actual: Actual | None = None
    devices: int | None = None  # devices the change reaches (deployments), when the provider can count

    @property
    def target(self) -> str:
        """The concrete id acted upon: a deployment id, ``model:version``, ``image:label``."""
        if isinstance(self.desired, DesiredDeployment) and self.action is not Action.DELETE:
            return self.desired.id
        if isinstance(self.actual, LiveDeployment):
            return self.actual.id
        if isinstance(self.desired, DesiredImage):
            return f"{self.key.name}:{self.desired.label}"
        if isinstance(self.actual, ImageVersion):
            return f"{self.actual.name}:{self.actual.label}"
        if isinstance(self.actual, ModelVersion):
            return f"{self.actual.name}:{self.actual.version}"
        return self.key.name


@dataclass(frozen=True)
class Plan:
    """The changes for one environment, in the order they must be applied.

    ``changes`` lists creates, updates and replaces in dependency order (models, images,
    deployments), then deletes in reverse order. ``orphans`` are owned resources that left
    the specs and are kept because the plan was made without ``--prune``. ``unmanaged``
    are resources in the backend without the reconciler's ownership marks: never touched.
    ``state_fingerprint`` and ``desired_fingerprint`` identify the inputs, so that a saved
    plan is refused once either moved.
    """

    environment: str
    changes: tuple[Change, ...]
    unchanged: tuple[ResourceKey, ...]
    orphans: tuple[ResourceKey, ...]
    unmanaged: tuple[str, ...]
    state_fingerprint: str
    desired_fingerprint: str
    prune: bool = False
    warnings: tuple[Diagnostic, ...] = field(default=())  # at the spec they are about
    behaviour: BehaviourReport | None = None  # samples run on new image versions (reconciler.behaviour)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action is action)

    @property
    def to_change(self) -> int:
        return sum(1 for change in self.changes if change.action.is_change)

    @property
    def summary(self) -> str:
        if not self.changes:
            return "No changes. The actual state matches the specs."
        return (
            f"Plan: {self.count(Action.CREATE)} to add, {self.to_change} to change, "
            f"{self.count(Action.REPLACE)} to replace, {self.count(Action.DELETE)} to destroy."
        )
