"""The plan: what an apply will do, as a value.

A ``Plan`` is computed by the pure planner from the desired state and one snapshot of the
actual state. It is rendered for people (text, markdown), saved as JSON for a later apply,
and executed change by change by a provider. It never contains a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING

from reconciler.model.diagnostics import Diagnostic
from reconciler.model.specs import JSON, DeploymentSpec, ImageSpec, Kind, ModelSpec, PromotedImageSpec, ResourceKey
from reconciler.model.state import ImageVersion, LiveDeployment, ModelVersion, PromotionSource, Snapshot

if TYPE_CHECKING:  # a plan's behaviour section: only plans that ran samples build its classes
    from reconciler.model.behaviour_results import BehaviourReport


class Action(str, Enum):
    """What happens to one resource. The symbols are Terraform's.

    ``NEW_VERSION`` is the versioned kinds' change (models, images): a new version is
    registered or built and the old one stays; it counts as a change, shown ``~``.
    ``ROLLOUT`` is a step of a staged rollout (``RolloutStep``), shown ``>``."""

    CREATE = "create"
    UPDATE = "update"
    NEW_VERSION = "new-version"
    REPLACE = "replace"
    DELETE = "delete"
    ROLLOUT = "rollout"

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "new-version": "~", "replace": "-/+", "delete": "-",
                "rollout": ">"}[self.value]

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
    # model name -> (registered name, version) for the models whose source is a registered version: that exact
    # version is packaged (the others: the newest version this environment owns with the fingerprint)
    registered_models: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class DesiredPromotion:
    """An image copied from another environment's registry, digest for digest, instead of built
    (``spec.promoteFrom``): it gets the source's label, so its reference differs only by registry."""

    spec: PromotedImageSpec
    fingerprint: str  # the source image's: the same inputs
    label: str
    reference: str  # "<this registry>/<name>:<label>"
    source: PromotionSource  # with the digest this environment will run


@dataclass(frozen=True)
class DesiredDeployment:
    """A deployment as it will be written to the hub.

    ``content`` is the full ``modulesContent`` with each registry password replaced by a
    placeholder (see ``core.manifest.password_placeholder``): the provider fills them in at
    apply time, fetched from the registry, and nowhere else.
    """

    spec: DeploymentSpec
    id: str  # "<name>-<content hash>": content is immutable, so new content needs a new id (or, while its
    #          content is the same, the id of the deployment the spec adopts: ``core.adoption``)
    content_hash: str
    content: dict[str, JSON]
    target_condition: str
    registries: tuple[str, ...]  # names of registries whose credentials the content embeds
    metrics: dict[str, str] = field(default_factory=dict)  # custom metric queries, ``{deploymentId}`` filled in


class StepKind(str, Enum):
    """The steps of a staged rollout, each carried out with IoT Hub's own mechanisms."""

    START = "start"  # create the candidate on the first ring (and delete an older in-flight candidate)
    ADVANCE = "advance"  # widen the candidate's target condition to the next ring, in place
    COMPLETE = "complete"  # full condition and the spec's priority, then delete the stable version
    ROLLBACK = "rollback"  # mark the failure on the stable version, then delete the candidate
    PAUSE = "pause"  # mark the failed gate on the candidate and keep it where it is
    REFRESH = "refresh"  # the spec's target condition, priority, labels or metrics, in place, marks kept


@dataclass(frozen=True)
class RolloutStep:
    """What one rollout step changes. ``candidate`` is the in-flight candidate it acts on (for START,
    an older candidate it supersedes, if any); ``stable`` the version devices fall back to; for
    REFRESH, ``refreshed`` is the one of them whose mutable fields change."""

    kind: StepKind
    ring: str | None  # the candidate's ring after the step (None once complete or rolled back)
    target_condition: str  # the target condition after the step (of ``refreshed`` for REFRESH)
    priority: int  # the priority after the step (of ``refreshed`` for REFRESH)
    candidate: LiveDeployment | None = None
    stable: LiveDeployment | None = None
    failed_gate: str | None = None  # ROLLBACK / PAUSE: the gate that failed
    refreshed: LiveDeployment | None = None


@dataclass(frozen=True)
class GateResult:
    """One gate's figure against its threshold, as a rollout status shows it."""

    gate: str  # "minSuccessPercent", "maxFailedDevices", "metrics.scorerErrors.max"
    figure: float | int | None  # None: not evaluated yet
    threshold: float | int
    passed: bool


@dataclass(frozen=True)
class RolloutStatus:
    """Where one deployment's rollout stands: shown by plans and `reconciler rollout status`."""

    deployment: str
    candidate: str | None  # the candidate's id, None when no rollout is in flight
    stable: str | None
    ring: str | None  # the candidate's current ring
    rings: tuple[str, ...]
    state: str  # "waiting", "ready", "failing", "paused", "failed", "complete"
    message: str  # one line: why it waits, or what the next step is
    since: str | None = None
    soak_seconds: int | None = None
    elapsed_seconds: int | None = None
    gates: tuple[GateResult, ...] = ()
    ring_devices: dict[str, int] = field(default_factory=dict)  # ring name (and "all") -> devices it reaches

    @property
    def remaining_seconds(self) -> int | None:
        if self.soak_seconds is None or self.elapsed_seconds is None:
            return None
        return max(0, self.soak_seconds - self.elapsed_seconds)


Desired = DesiredModel | DesiredImage | DesiredPromotion | DesiredDeployment
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
    step: RolloutStep | None = None  # set for ROLLOUT

    @property
    def target(self) -> str:
        """The concrete id acted upon: a deployment id, ``model:version``, ``image:label``."""
        if self.step is not None and self.step.refreshed is not None:
            return self.step.refreshed.id
        if isinstance(self.desired, DesiredDeployment) and self.action is not Action.DELETE:
            return self.desired.id
        if isinstance(self.actual, LiveDeployment):
            return self.actual.id
        if isinstance(self.desired, (DesiredImage, DesiredPromotion)):
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
    plan is refused once either moved. ``state`` is the actual state the plan was made from.
    """

    environment: str
    changes: tuple[Change, ...]
    unchanged: tuple[ResourceKey, ...]
    orphans: tuple[ResourceKey, ...]
    unmanaged: tuple[str, ...]
    state: Snapshot = field(compare=False, repr=False)
    desired_fingerprint: str
    prune: bool = False
    warnings: tuple[Diagnostic, ...] = field(default=())  # at the spec they are about
    rollouts: tuple[RolloutStatus, ...] = field(default=())  # staged rollouts in flight, or failed
    behaviour: BehaviourReport | None = None  # samples run on new image versions (reconciler.behaviour)

    @cached_property
    def state_fingerprint(self) -> str:
        """Computed when asked (a saved plan, its check, the JSON form): a plan only shown never needs it, and it
        serialises the whole snapshot (about 15 ms of a full hub's no-op plan)."""
        return self.state.fingerprint()

    @property
    def rollout_steps(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.action is Action.ROLLOUT)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def sampled_changes(self) -> list[Change]:
        """The changes whose samples the plan runs: images built anew (new image or new version) that have
        samples (``core.behaviour``)."""
        return [c for c in self.changes if c.key.kind is Kind.IMAGE and c.action in (Action.CREATE, Action.NEW_VERSION)
                and isinstance(c.desired, DesiredImage) and c.desired.spec.samples is not None]

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action is action)

    @property
    def to_change(self) -> int:
        return sum(1 for change in self.changes if change.action.is_change)

    @property
    def summary(self) -> str:
        if not self.changes and self.rollouts:
            return "No changes. Rollouts are in flight or held: see Rollouts above."
        if not self.changes:
            return "No changes. The actual state matches the specs."
        steps = self.count(Action.ROLLOUT)
        rollout = f", {steps} rollout step{'s' if steps != 1 else ''}" if steps else ""
        return (
            f"Plan: {self.count(Action.CREATE)} to add, {self.to_change} to change, "
            f"{self.count(Action.REPLACE)} to replace, {self.count(Action.DELETE)} to destroy{rollout}."
        )
