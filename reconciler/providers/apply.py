"""The one apply path: a plan's ``Change`` -> calls on a backend's adapters, on every backend.

Every rule of *how* a change is carried out lives here, once:

* **dispatch** by kind and action; a new model or image version registers or builds, the old
  one stays;
* **ownership**: a fresh read right before any update or delete; anything this environment
  does not own is refused, whoever asks;
* **create before delete**: a replace creates the new deployment (and refuses to start when the
  old one is not ours) before it deletes the old one, so no device is left without a deployment;
* **files unchanged since the plan**: model files and image inputs are fingerprinted again
  before they are registered or built;
* **packaged models**: an image packages the newest owned version with the fingerprint its
  label stands for, or exactly the registered version a Model spec names (``source.registered``);
* **promotions**: a promoted image is copied by digest from its source environment, never built;
* **registry passwords**: each registry the content names has its placeholder, the password is
  fetched now and filled in, the credential version must still be the one the plan rendered,
  and no placeholder may be left; credentials no deployment embeds any more are released.

Adapters (``providers.base``) only call their store or SDK.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import TypeVar

from reconciler.core import manifest as render
from reconciler.core.adoption import same_content
from reconciler.errors import PermanentProviderError
from reconciler.hub import manifest
from reconciler.model import ownership
from reconciler.model.plan import (
    Action,
    Change,
    DesiredDeployment,
    DesiredImage,
    DesiredModel,
    DesiredPromotion,
    StepKind,
)
from reconciler.model.specs import EnvironmentSpec, Kind
from reconciler.model.state import ImageVersion, LiveDeployment, ModelVersion, RolloutMark
from reconciler.providers.base import Adapters, Progress
from reconciler.providers.conditions import checked_condition
from reconciler.spec.fingerprints import HashCache, image_fingerprint, tree_digest

T = TypeVar("T")


def _expect(value: object, kind: type[T], change: Change) -> T:
    if not isinstance(value, kind):
        raise PermanentProviderError(f"malformed {change.action.value} change: expected a {kind.__name__}",
                                     resource=str(change.key))
    return value


def repository_of(image: str, address: str) -> str | None:
    """``contoso.azurecr.io/iris-scorer:3f2a`` -> ``iris-scorer`` when the image is in that registry."""
    host, _, rest = image.partition("/")
    if host.lower() != address.lower() or not rest:
        return None
    return re.split(r"[@:]", rest, maxsplit=1)[0] or None


def changed_properties(version: ModelVersion, properties: dict[str, str]) -> list[str]:
    """The declared property keys whose value differs on ``version``: these cannot change in place."""
    return sorted(k for k, v in properties.items() if k in version.properties and version.properties[k] != v)


def adopts(deployment: DesiredDeployment, live: LiveDeployment) -> bool:
    """Whether ``live`` is the unmanaged deployment the spec asks to take over (``spec.adopt``): the one
    exception to "never change what this environment does not own" (see ``core.adoption``)."""
    return live.owner is None and deployment.spec.adopt == live.id and deployment.spec.rollout is None


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def timestamp(moment: datetime) -> str:
    """A label-safe ISO 8601 UTC time, to the second (``2026-11-28T10:15:00Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Executor:
    """Carries out the changes of one environment's plan through its adapters. ``clock`` gives the
    time rollout steps record (when a candidate entered its ring)."""

    def __init__(self, environment: EnvironmentSpec, adapters: Adapters, progress: Progress,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.environment = environment
        self.clock = clock
        self.name = environment.name
        self.models = adapters.models
        self.images = adapters.images
        self.deployments = adapters.deployments
        self.credentials = adapters.credentials
        self.progress = progress

    def apply(self, change: Change) -> None:
        try:
            if change.key.kind is Kind.MODEL:
                self._model(change)
            elif change.key.kind is Kind.IMAGE:
                self._image(change)
            else:
                self._deployment(change)
        except OSError as exc:  # the spec's files, or a backend that keeps files (blobs, builds, secrets)
            where = f" ({exc.filename})" if exc.filename else ""
            raise PermanentProviderError(
                f"{exc.strerror or exc}{where}; check that the spec's files exist and that the backend's state is "
                "writable, then apply again", resource=str(change.key)) from exc

    def _refuse_foreign(self, owner: str | None, resource: str) -> None:
        if owner != self.name:
            whose = f"environment {owner!r}" if owner else "no environment (unmanaged)"
            raise PermanentProviderError(f"owned by {whose}, not {self.name!r}; the reconciler never changes it",
                                         resource=resource)

    # --- models ---------------------------------------------------------------------

    def _model(self, change: Change) -> None:
        if change.action is Action.DELETE:
            self.models.delete_owned(_expect(change.actual, ModelVersion, change).name)
        elif change.action in (Action.CREATE, Action.NEW_VERSION):
            self._register(_expect(change.desired, DesiredModel, change))
        elif change.action is Action.UPDATE:
            self._update_model(_expect(change.desired, DesiredModel, change),
                               _expect(change.actual, ModelVersion, change))
        else:
            raise PermanentProviderError("models cannot be replaced", resource=str(change.key))

    def _register(self, model: DesiredModel) -> None:
        spec = model.spec
        # A model from a URI: the adapter checks the bytes it registers against the pinned digest.
        if spec.path is not None and tree_digest(spec.path, HashCache()) != model.fingerprint:
            raise PermanentProviderError("the model files changed since the plan was made; run `reconciler plan` "
                                         "again", resource=f"model/{spec.name}")
        tags = {**spec.tags, **ownership.ownership_tags(self.name, spec.name, model.fingerprint)}
        self.models.register(spec, model.fingerprint, tags, self.progress)

    def _update_model(self, model: DesiredModel, planned: ModelVersion) -> None:
        what = f"model/{planned.name}:{planned.version}"
        current = self.models.version(planned.name, planned.version)
        if current is None:
            raise PermanentProviderError("this version no longer exists; run `reconciler plan` again", resource=what)
        self._refuse_foreign(current.owner, what)
        spec = model.spec
        if changed := changed_properties(current, spec.properties):
            raise PermanentProviderError(f"properties are add-only (as in Azure ML) and {', '.join(changed)} would "
                                         "change; a new version is needed: run `reconciler plan` again",
                                         resource=what)
        tags = {**spec.tags, **ownership.ownership_tags(self.name, spec.name, current.fingerprint or "")}
        added = {k: v for k, v in spec.properties.items() if k not in current.properties}
        self.models.update(current, spec.description, tags, added)

    # --- images ---------------------------------------------------------------------

    def _image(self, change: Change) -> None:
        if change.action is Action.DELETE:
            planned = _expect(change.actual, ImageVersion, change)
            current = self.images.get(planned.name, planned.label)
            if current is not None:  # gone already: the plan's intent holds
                self._refuse_foreign(current.owner, f"image/{current.name}:{current.label}")
                self.images.delete(current)
        elif change.action in (Action.CREATE, Action.NEW_VERSION) and isinstance(change.desired, DesiredPromotion):
            self._promote(change.desired)
        elif change.action in (Action.CREATE, Action.NEW_VERSION):
            self._build(_expect(change.desired, DesiredImage, change))
        else:
            raise PermanentProviderError("images are immutable: only new versions are built", resource=str(change.key))

    def _exists_as_ours(self, name: str, label: str) -> bool:
        """Whether ``name:label`` exists already, made by this environment; an error if it exists as another's
        (images are immutable: a label is never built or copied over)."""
        existing = self.images.get(name, label)
        if existing is None:
            return False
        if existing.owner == self.name:
            return True
        whose = f"environment {existing.owner!r}" if existing.owner else "no environment (unmanaged)"
        raise PermanentProviderError(f"this image exists already, owned by {whose}; images are immutable: "
                                     "rename the Image spec", resource=f"image/{name}:{label}")

    def _promote(self, promotion: DesiredPromotion) -> None:
        spec, what = promotion.spec, f"image/{promotion.spec.name}:{promotion.label}"
        if self._exists_as_ours(spec.name, promotion.label):
            return  # copied already (an import whose answer was lost, or an interrupted apply)
        if promotion.source.digest is None:
            raise PermanentProviderError(f"environment {promotion.source.environment!r} has not built it: nothing to "
                                         "promote; run `reconciler plan` again", resource=what)
        tags = {**spec.tags, **ownership.ownership_tags(self.name, spec.name, promotion.fingerprint)}
        self.images.promote(promotion, tags, self.progress)

    def _build(self, image: DesiredImage) -> None:
        spec, what = image.spec, f"image/{image.spec.name}:{image.label}"
        if self._exists_as_ours(spec.name, image.label):
            return  # built already (a build whose answer was lost, or an interrupted apply)
        if image_fingerprint(spec, image.model_fingerprints, HashCache()) != image.fingerprint:
            raise PermanentProviderError("the image's files (entry script, conda file, source directory) changed "
                                         "since the plan was made; run `reconciler plan` again", resource=what)
        models = [self._packaged(name, fingerprint, image.registered_models.get(name))
                  for name, fingerprint in sorted(image.model_fingerprints.items())]
        tags = {**spec.tags, **ownership.ownership_tags(self.name, spec.name, image.fingerprint)}
        self.images.build(image, models, tags, self.progress)

    def _packaged(self, name: str, fingerprint: str, registered: tuple[str, int] | None = None) -> ModelVersion:
        if registered is not None:  # a registered version (spec.source.registered): exactly that one, whoever owns it
            found = self.models.version(*registered)
            if found is None:
                raise PermanentProviderError(f"registered version {registered[0]}:{registered[1]} no longer exists; "
                                             "run `reconciler plan` again", resource=f"model/{name}")
            return replace(found, fingerprint=fingerprint)
        version = self.models.newest(name, fingerprint)
        if version is None:
            raise PermanentProviderError(
                f"no version of model {name} owned by environment {self.name!r} has the files this image packages "
                f"(fingerprint {fingerprint[:12]}): the model was not registered; run `reconciler plan` and apply "
                "the model first", resource=f"model/{name}")
        return version

    # --- deployments ----------------------------------------------------------------

    def _deployment(self, change: Change) -> None:
        if change.action is Action.CREATE:
            self._create(_expect(change.desired, DesiredDeployment, change))
        elif change.action is Action.UPDATE:
            self._update_deployment(_expect(change.desired, DesiredDeployment, change),
                                    _expect(change.actual, LiveDeployment, change))
        elif change.action is Action.REPLACE:
            desired = _expect(change.desired, DesiredDeployment, change)
            old = self.deployments.get(_expect(change.actual, LiveDeployment, change).id)
            if old is not None and not adopts(desired, old):
                self._refuse_foreign(old.owner, old.id)  # before anything is created
            self._create(desired)
            if old is not None:
                self._delete(old)
        elif change.action is Action.DELETE:
            current = self.deployments.get(_expect(change.actual, LiveDeployment, change).id)
            if current is not None:  # gone already: the plan's intent holds
                self._refuse_foreign(current.owner, current.id)
                self._delete(current)
        elif change.action is Action.ROLLOUT:
            self._rollout(change)
        else:
            raise PermanentProviderError("deployments have no versions", resource=str(change.key))

    def _create(self, deployment: DesiredDeployment) -> None:
        spec = deployment.spec
        checked_condition(deployment.target_condition, deployment.id)
        content = self._with_passwords(deployment)
        labels = self._labels(spec.labels, spec.name, deployment.content_hash)
        self.deployments.create(deployment.id, content, deployment.target_condition, spec.priority, labels,
                                dict(deployment.metrics), spec.layered)

    def _labels(self, user: dict[str, str], name: str, digest: str,
                mark: RolloutMark | None = None) -> dict[str, str]:
        """The complete labels of an owned deployment: the user's, ownership (the spec name and content
        hash), and the rollout ``mark`` if any. Every write of a deployment's labels goes through here."""
        rollout = ownership.rollout_labels(mark) if mark is not None else {}
        return {**user, **ownership.ownership_tags(self.name, name, digest), **rollout}

    def _fresh(self, planned: LiveDeployment) -> LiveDeployment:
        """A deployment a rollout step acts on, as it is now: it must exist and be ours."""
        current = self.deployments.get(planned.id)
        if current is None:
            raise PermanentProviderError("this deployment no longer exists; run `reconciler plan` again",
                                         resource=planned.id)
        self._refuse_foreign(current.owner, current.id)
        return current

    def _rollout(self, change: Change) -> None:
        """One step of a staged rollout (see ``core.rollout``). Every step is safe to repeat, and an
        interrupted one leaves a state the next plan continues from."""
        deployment = _expect(change.desired, DesiredDeployment, change)
        step = change.step
        if step is None:
            raise PermanentProviderError("malformed rollout change: no step", resource=str(change.key))
        spec, since = deployment.spec, timestamp(self.clock())
        checked_condition(step.target_condition, deployment.id)
        if step.kind is StepKind.REFRESH and step.refreshed is not None:
            live = self._fresh(step.refreshed)
            labels = self._labels(spec.labels, live.name, live.content_hash or "", live.rollout)
            self.deployments.update(live.id, step.target_condition, step.priority, labels,
                                    render.metric_queries(spec.metrics, live.id))
            return
        if step.kind is StepKind.START:
            old = self._fresh(step.candidate) if step.candidate is not None else None
            content = self._with_passwords(deployment)
            labels = self._labels(spec.labels, spec.name, deployment.content_hash,
                                  RolloutMark(ring=step.ring, since=since))
            self.deployments.create(deployment.id, content, step.target_condition, step.priority, labels,
                                    dict(deployment.metrics), spec.layered)
            if old is not None:  # the in-flight candidate this content supersedes: after the create
                self._delete(old)
            return
        if step.candidate is None:
            raise PermanentProviderError("malformed rollout change: no candidate", resource=str(change.key))
        candidate = self._fresh(step.candidate)
        if step.kind is StepKind.ADVANCE:
            self.deployments.update(candidate.id, step.target_condition, step.priority,
                                    self._labels(spec.labels, spec.name, deployment.content_hash,
                                                 RolloutMark(ring=step.ring, since=since)),
                                    dict(deployment.metrics))
        elif step.kind is StepKind.COMPLETE:
            self.deployments.update(candidate.id, step.target_condition, step.priority,
                                    self._labels(spec.labels, spec.name, deployment.content_hash),
                                    dict(deployment.metrics))
            if step.stable is not None and (stable := self.deployments.get(step.stable.id)) is not None:
                self._refuse_foreign(stable.owner, stable.id)
                self._delete(stable)
        elif step.kind is StepKind.PAUSE:
            mark = RolloutMark(ring=candidate.rollout.ring, since=candidate.rollout.since, paused=step.failed_gate)
            self.deployments.update(candidate.id, candidate.target_condition, candidate.priority,
                                    self._labels(candidate.labels, candidate.name, candidate.content_hash or "", mark),
                                    candidate.metrics)
        elif step.kind is StepKind.ROLLBACK:
            if step.stable is None:
                raise PermanentProviderError("nothing to roll back to", resource=candidate.id)
            # The failure is recorded first: an interruption before the delete leaves a state the next
            # plan finishes (it never starts the failed content again).
            stable = self._fresh(step.stable)
            mark = RolloutMark(failed=deployment.content_hash, failed_ring=candidate.rollout.ring,
                               failed_gate=step.failed_gate)
            self.deployments.update(stable.id, stable.target_condition, stable.priority,
                                    self._labels(stable.labels, stable.name, stable.content_hash or "", mark),
                                    stable.metrics)
            self._delete(candidate)
        else:
            raise PermanentProviderError(f"unknown rollout step {step.kind.value!r}", resource=str(change.key))

    def _with_passwords(self, deployment: DesiredDeployment) -> dict[str, object]:
        """The content with each registry's password filled in, fetched now; refused when the credentials
        are not the ones the plan rendered."""
        entries = manifest.registry_credentials(deployment.content)
        images = manifest.module_images(deployment.content).values()
        passwords, versions = {}, {}
        for registry in deployment.registries:
            entry = entries.get(registry)
            if registry not in self.environment.registries:
                raise PermanentProviderError(f"registry {registry!r} is not declared in environment.yaml",
                                             resource=deployment.id)
            if entry is None or entry.get("password") != manifest.password_placeholder(registry):
                raise PermanentProviderError(f"the content has no credentials for registry {registry!r}; run "
                                             "`reconciler plan` again", resource=deployment.id)
            address = str(entry.get("address"))
            repositories = {repo for image in images if (repo := repository_of(image, address))}
            credential = self.credentials.credential(registry, str(entry.get("username")), repositories)
            passwords[registry], versions[registry] = credential.password, credential.version
        if render.content_hash(deployment.content, versions) != deployment.content_hash:
            raise PermanentProviderError("the registry credentials changed since the plan was made (a rotation or "
                                         "a regenerated password); run `reconciler plan` again",
                                         resource=deployment.id)
        content = manifest.fill_passwords(deployment.content, passwords)
        text = manifest.canonical_json(content)
        if any(manifest.password_placeholder(registry) in text for registry in deployment.registries):
            raise PermanentProviderError("a registry password placeholder did not resolve", resource=deployment.id)
        return content

    def _update_deployment(self, deployment: DesiredDeployment, planned: LiveDeployment) -> None:
        """The mutable fields only: target condition, priority, labels and metrics. Adopting an unmanaged
        deployment (``spec.adopt``) is this update too: it adds the ownership labels, and only if the
        content is still exactly the spec's."""
        current = self.deployments.get(planned.id)
        if current is None:
            raise PermanentProviderError("this deployment no longer exists; run `reconciler plan` again",
                                         resource=planned.id)
        spec = deployment.spec
        name, digest = current.name, current.content_hash or ""
        if adopts(deployment, current):
            if not same_content(current.content, deployment.content):
                raise PermanentProviderError("its content changed since the plan was made, so it cannot be adopted "
                                             "in place; run `reconciler plan` again", resource=current.id)
            name, digest = spec.name, deployment.content_hash
        else:
            self._refuse_foreign(current.owner, current.id)
        checked_condition(deployment.target_condition, current.id)
        labels = self._labels(spec.labels, name, digest)
        self.deployments.update(current.id, deployment.target_condition, spec.priority, labels,
                                dict(deployment.metrics))

    def _delete(self, deployment: LiveDeployment) -> None:
        """Delete an owned deployment, then release the registry credentials that no owned deployment
        embeds any more."""
        self.deployments.delete(deployment.id)
        released = set(manifest.registry_credentials(deployment.content)) & set(self.environment.registries)
        if not released:
            return
        remaining = [manifest.registry_credentials(d.content) for d in self.deployments.owned()
                     if d.id != deployment.id]
        for registry in sorted(released):
            in_use = {str(entries[registry].get("username")) for entries in remaining if registry in entries}
            self.credentials.release_unused(registry, in_use)
