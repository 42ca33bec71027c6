"""The planner: desired state + fingerprints + actual snapshot -> Plan. A pure function.

Semantics mirror Azure, so a plan means the same on every backend:

* Models are versioned. New content registers a new version (the old one stays);
  description, tags and properties change in place on the current version.
* Images are immutable. Their label is derived from their fingerprint; new inputs build a
  new version. Old versions stay (devices may still run them). A promoted image
  (``spec.promoteFrom``) is never built: the version its source environment built with the
  same fingerprint is copied by digest, and the plan is refused while there is none.
* Deployment content is immutable (IoT Hub). Target condition, priority, labels and
  metrics change in place; new content is a replace under a new id (name + content hash),
  created before the old deployment is deleted.
* Only resources owned by this environment are changed. Owned resources that left the
  specs are deleted only with ``prune``; otherwise they are listed as orphans. Owned
  deployments left over from an interrupted replace (same name, another id) are deleted.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from reconciler.core import adoption, manifest, rollout
from reconciler.core.diff import describe, field_changes
from reconciler.errors import SpecError
from reconciler.hub.manifest import canonical_json, module_images
from reconciler.model.diagnostics import Diagnostic
from reconciler.model.plan import (
    Action,
    Change,
    DesiredDeployment,
    DesiredImage,
    DesiredModel,
    DesiredPromotion,
    FieldChange,
    Plan,
    RolloutStatus,
)
from reconciler.model.specs import DeploymentSpec, DesiredState, Fingerprints, Kind, PromotedImageSpec, ResourceKey
from reconciler.model.state import ImageVersion, LiveDeployment, ModelVersion, PromotionSource, Snapshot

IMAGE_LABEL_LENGTH = 12


def image_label(fingerprint: str) -> str:
    return fingerprint[:IMAGE_LABEL_LENGTH]


def desired_models(desired: DesiredState, fingerprints: Fingerprints) -> dict[str, DesiredModel]:
    return {name: DesiredModel(spec, fingerprints.models[name]) for name, spec in sorted(desired.models.items())}


def desired_images(desired: DesiredState, fingerprints: Fingerprints, registry: str) -> dict[str, DesiredImage]:
    images = {}
    for name, spec in sorted(desired.images.items()):
        fingerprint = fingerprints.images[name]
        label = image_label(fingerprint)
        images[name] = DesiredImage(
            spec=spec, fingerprint=fingerprint, label=label, reference=f"{registry}/{name}:{label}",
            model_fingerprints={model: fingerprints.models[model] for model in spec.models},
            registered_models={model: (source.name, source.version) for model in spec.models
                               if (source := desired.models[model].registered) is not None},
        )
    return images


def desired_promotions(desired: DesiredState, fingerprints: Fingerprints, registry: str,
                       sources: Mapping[str, PromotionSource]) -> dict[str, DesiredPromotion]:
    """The promoted images, each with what its source environment holds for its label (a source
    that has not built it is recorded with ``digest`` None: ``_plan_promotions`` refuses it)."""
    promotions = {}
    for name, spec in sorted(desired.promotions.items()):
        fingerprint = fingerprints.images[name]
        label = image_label(fingerprint)
        source = sources.get(name) or PromotionSource(spec.source.environment.name, spec.source_image, label, None,
                                                       f"{spec.source_image}:{label}")
        promotions[name] = DesiredPromotion(spec=spec, fingerprint=fingerprint, label=label,
                                            reference=f"{registry}/{name}:{label}", source=source)
    return promotions


def target_condition(spec: DeploymentSpec) -> str:
    """The deployment's condition as the hub stores it (device ids become an OR chain)."""
    if spec.target_condition:
        return spec.target_condition
    from reconciler.hub.conditions import device_ids_condition  # its parser's classes: only device ids need it

    return device_ids_condition(spec.device_ids)


def desired_deployments(
    desired: DesiredState, images: Mapping[str, DesiredImage | DesiredPromotion], snapshot: Snapshot
) -> tuple[dict[str, DesiredDeployment], list[Diagnostic]]:
    references = {name: image.reference for name, image in images.items()}
    deployments, warnings = {}, []
    for name, spec in sorted(desired.deployments.items()):
        registry = snapshot.registries.get(spec.registry) if spec.registry else None
        if spec.registry and registry is None:
            warnings.append(Diagnostic(spec.location, f"deployment/{name}", "",
                                       f"registry {spec.registry!r} was not found in the backend; the manifest "
                                       "carries no credentials for it"))
        content = manifest.render(spec, references, registry)
        versions = {registry.name: registry.credential_version} if registry else {}
        digest = manifest.content_hash(content, versions)
        deployment_id = adoption.adopted_id(spec, content, digest, snapshot) or manifest.deployment_id(name, digest)
        deployments[name] = DesiredDeployment(
            spec=spec,
            id=deployment_id,
            content_hash=digest,
            content=content,
            target_condition=target_condition(spec),
            registries=tuple(versions),
            metrics=manifest.metric_queries(spec.metrics, deployment_id),
        )
    return deployments, warnings


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def plan(desired: DesiredState, fingerprints: Fingerprints, snapshot: Snapshot, *, prune: bool = False,
         now: datetime | None = None, sources: Mapping[str, PromotionSource] | None = None) -> Plan:
    """``now`` is the time rollouts are judged at (soak times); without it, no ring has soaked.
    ``sources``: for each promoted image, what its source environment holds (read by the engine)."""
    environment = desired.environment.name
    models = desired_models(desired, fingerprints)
    images = desired_images(desired, fingerprints, snapshot.image_registry)
    promotions = desired_promotions(desired, fingerprints, snapshot.image_registry, sources or {})
    deployments, warnings = desired_deployments(desired, {**images, **promotions}, snapshot)

    changes: list[Change] = []
    unchanged: list[ResourceKey] = []
    orphans: list[Change] = []

    def collect(results: Iterable[Change | ResourceKey | Orphan]) -> None:
        for result in results:
            if isinstance(result, ResourceKey):
                unchanged.append(result)
            elif isinstance(result, Orphan):
                orphans.append(result.change)
            else:
                changes.append(result)

    model_changes = list(_plan_models(models, _owned(snapshot.models, environment)))
    collect(model_changes)
    new_model_versions = {c.key.name for c in model_changes if isinstance(c, Change) and c.action is not Action.DELETE}
    owned_images = _owned(snapshot.images, environment)
    collect(_plan_images(images, owned_images, new_model_versions, set(promotions)))
    collect(_plan_promotions(promotions, owned_images))
    rollouts: list[RolloutStatus] = []
    adopted = adoption.candidates(deployments, snapshot)  # unmanaged deployments a spec takes over (spec.adopt)
    owned = adoption.with_adopted(_owned(snapshot.deployments, environment), adopted)
    collect(adoption.adopting(_plan_deployments(deployments, owned, now or EPOCH, rollouts), deployments, adopted,
                              environment))
    warnings += _foreign_model_warnings(models, snapshot.models, environment)

    if prune:
        changes += orphans
    forward = sorted((c for c in changes if c.action is not Action.DELETE), key=lambda c: c.key)
    deletes = sorted((c for c in changes if c.action is Action.DELETE),
                     key=lambda c: (-c.key.kind.order, c.key.name, c.target))
    adopted_ids = {d.id for d in adopted.values()}  # listed as changes, not as unmanaged
    unmanaged = sorted(
        f"deployment/{d.id}" + (f" (owned by environment {d.owner})" if d.owner else "")
        for d in snapshot.deployments if d.owner != environment and d.id not in adopted_ids
    )
    return Plan(
        environment=environment,
        changes=(*forward, *deletes),
        unchanged=tuple(sorted(unchanged)),
        orphans=() if prune else tuple(sorted({c.key for c in orphans}, key=str)),
        unmanaged=tuple(unmanaged),
        state=snapshot,
        desired_fingerprint=desired_fingerprint(models, images, deployments, promotions),
        prune=prune,
        warnings=tuple(warnings),
        rollouts=tuple(rollouts),
    )


ORPHAN_REASON = "no longer in the specs"


@dataclass(frozen=True)
class Orphan:
    """A delete of an owned resource that left the specs: applied only with ``prune``."""

    change: Change


def _owned(resources: Iterable[Any], environment: str) -> dict[str, list[Any]]:
    owned: dict[str, list[Any]] = defaultdict(list)
    for resource in resources:
        if resource.owner == environment:
            owned[resource.name].append(resource)
    return owned


def _plan_models(models: dict[str, DesiredModel],
                 owned: dict[str, list[ModelVersion]]) -> Iterable[Change | ResourceKey | Orphan]:
    for name, model in models.items():
        key = ResourceKey(Kind.MODEL, name)
        if model.spec.registered is not None:
            yield key  # a registered version is packaged as it is: nothing to register or change
            continue
        source = model.spec.uri
        origin = f" from {source.uri} ({source.digest})" if source is not None else ""
        after = {"fingerprint": model.fingerprint, "description": model.spec.description,
                 "tags": model.spec.tags, "properties": model.spec.properties}
        versions = owned.get(name)
        if not versions:
            yield Change(key, Action.CREATE, f"new model: registers version 1{origin}",
                         field_changes({}, after), desired=model)
            continue
        latest = max(versions, key=lambda v: v.version)
        # Properties are add-only in Azure ML: compare only the keys the spec declares.
        before = {"fingerprint": latest.fingerprint, "description": latest.description, "tags": latest.tags,
                  "properties": {k: latest.properties.get(k) for k in model.spec.properties if k in latest.properties}}
        fields = field_changes(before, after)
        edited = sorted(k for k, v in model.spec.properties.items() if k in latest.properties
                        and latest.properties[k] != v)
        if latest.fingerprint != model.fingerprint:
            what = "model digest changed" if source is not None else "model files changed"
            yield Change(key, Action.NEW_VERSION, f"{what}: registers version {latest.version + 1}{origin}",
                         fields, desired=model, actual=latest)
        elif edited:
            # Azure ML can add properties to a version but never change one: a new value needs a new version.
            yield Change(key, Action.NEW_VERSION, f"properties {', '.join(edited)} changed (properties cannot be "
                                                  f"edited): registers version {latest.version + 1}",
                         fields, desired=model, actual=latest)
        elif fields:
            yield Change(key, Action.UPDATE, describe(fields), fields, desired=model, actual=latest)
        else:
            yield key
    for name in sorted(set(owned) - set(models)):
        latest = max(owned[name], key=lambda v: v.version)
        yield Orphan(Change(ResourceKey(Kind.MODEL, name), Action.DELETE,
                            f"{ORPHAN_REASON} ({len(owned[name])} version(s))", actual=latest))


def _plan_images(images: dict[str, DesiredImage], owned: dict[str, list[ImageVersion]],
                 changed_models: set[str], promoted: set[str]) -> Iterable[Change | ResourceKey | Orphan]:
    for name, image in images.items():
        key = ResourceKey(Kind.IMAGE, name)
        versions = sorted(owned.get(name, []), key=lambda v: (v.created, v.label))
        after = {"label": image.label, "models": image.model_fingerprints}
        if any(v.label == image.label for v in versions):
            yield key
            continue
        if not versions:
            yield Change(key, Action.CREATE, f"new image: builds {name}:{image.label}",
                         field_changes({}, after), desired=image)
            continue
        current = versions[-1]
        causes = sorted(set(image.spec.models) & changed_models)
        why = (f"model {', '.join(causes)} changed" if causes
               else "entry script, conda file or source directory changed")
        yield Change(key, Action.NEW_VERSION, f"{why}: builds {name}:{image.label}",
                     (FieldChange("label", current.label, image.label),), desired=image, actual=current)
    for name in sorted(set(owned) - set(images) - promoted):
        for version in sorted(owned[name], key=lambda v: v.label):
            yield Orphan(Change(ResourceKey(Kind.IMAGE, name), Action.DELETE, ORPHAN_REASON, actual=version))


def _plan_promotions(promotions: dict[str, DesiredPromotion],
                     owned: dict[str, list[ImageVersion]]) -> Iterable[Change | ResourceKey]:
    """A promoted image whose label is here already is unchanged (it was copied, or built, with these
    inputs); otherwise its source environment's build of that label is copied, refused while there is
    none: a promotion never builds."""
    refused = []
    for name, promotion in promotions.items():
        key = ResourceKey(Kind.IMAGE, name)
        versions = sorted(owned.get(name, []), key=lambda v: (v.created, v.label))
        if any(v.label == promotion.label for v in versions):
            yield key
            continue
        source, spec = promotion.source, promotion.spec
        if source.digest is None or source.label != promotion.label:
            refused.append(Diagnostic(spec.location, f"image/{name}", "spec.promoteFrom", (
                f"environment {source.environment!r} has not built {source.image}:{promotion.label} (the version "
                f"its specs give now), so there is nothing to promote: apply {display_folder(spec)} first, then "
                "plan again; nothing was applied")))
            continue
        after = {"label": promotion.label, "digest": source.digest, "from": source.reference}
        why = f"promoted from environment {source.environment}: copies {source.reference} ({source.digest}), no build"
        if not versions:
            yield Change(key, Action.CREATE, f"new image, {why}", field_changes({}, after), desired=promotion)
            continue
        current = versions[-1]
        yield Change(key, Action.NEW_VERSION, why,
                     (FieldChange("digest", None, source.digest), FieldChange("from", None, source.reference),
                      FieldChange("label", current.label, promotion.label)),
                     desired=promotion, actual=current)
    if refused:
        raise SpecError(refused)


def display_folder(spec: PromotedImageSpec) -> str:
    """``environments/dev`` for a promotion from ``dev`` beside ``environments/prod``: where to apply."""
    return f"{spec.source_directory.parent.name}/{spec.source_directory.name}"


def _mutable(target_condition: str, priority: int, labels: dict[str, str], metrics: dict[str, str]) -> dict[str, Any]:
    return {"targetCondition": target_condition, "priority": priority, "labels": labels, "metrics": metrics}


def _plan_deployments(deployments: dict[str, DesiredDeployment], owned: dict[str, list[LiveDeployment]],
                      now: datetime, rollouts: list[RolloutStatus]) -> Iterable[Change | ResourceKey | Orphan]:
    for name, deployment in deployments.items():
        key = ResourceKey(Kind.DEPLOYMENT, name)
        spec = deployment.spec
        if spec.rollout is not None and spec.rollout.rings:
            decision = rollout.decide(deployment, spec.rollout, owned.get(name, []), now)
            if decision is not None:
                rollouts.append(decision.status)
                yield from decision.changes or (key,)
                continue
        after = _mutable(deployment.target_condition, spec.priority, spec.labels, deployment.metrics)
        existing = sorted(owned.get(name, []), key=lambda d: (d.created, d.id))
        current = next((d for d in existing if d.id == deployment.id), None)
        if current is None and not existing:
            shown = {**after, "modules": module_images(deployment.content)}
            yield Change(key, Action.CREATE, f"new deployment {deployment.id}",
                         field_changes({}, shown), desired=deployment)
            continue
        if current is not None:
            before = _mutable(current.target_condition, current.priority, current.labels, current.metrics)
            fields = field_changes(before, after)
            if fields:
                yield Change(key, Action.UPDATE, describe(fields), fields, desired=deployment, actual=current)
            else:
                yield key
        else:
            current = existing[-1]
            before = _mutable(current.target_condition, current.priority, current.labels, current.metrics)
            content_fields = field_changes(current.content, deployment.content, prefix="content.")
            fields = content_fields + field_changes(before, after)
            what = describe(content_fields) if content_fields else "registry credentials rotated"
            yield Change(key, Action.REPLACE,
                         f"content is immutable in IoT Hub, new id {deployment.id}: {what}",
                         fields, desired=deployment, actual=current)
        for leftover in existing:
            if leftover.id not in (current.id, deployment.id):
                if leftover.is_candidate:
                    reason = f"rollout cancelled: the specs are back to {deployment.id}"
                elif current.is_candidate:
                    reason = f"the rollout left the spec: {deployment.id} takes every device at once"
                else:
                    reason = f"superseded by {deployment.id} (left over from an earlier apply)"
                yield Change(key, Action.DELETE, reason, actual=leftover)
    for name in sorted(set(owned) - set(deployments)):
        for leftover in sorted(owned[name], key=lambda d: d.id):
            yield Orphan(Change(ResourceKey(Kind.DEPLOYMENT, name), Action.DELETE, ORPHAN_REASON, actual=leftover))


def _foreign_model_warnings(models: dict[str, DesiredModel], versions: Iterable[ModelVersion],
                            environment: str) -> list[Diagnostic]:
    foreign = sorted({v.name for v in versions if v.name in models and v.owner != environment
                      and models[v.name].spec.registered is None})
    return [Diagnostic(models[name].spec.location, f"model/{name}", "", "versions exist that this environment does "
                       "not own; new versions are added beside them") for name in foreign]


def desired_fingerprint(models: dict[str, DesiredModel], images: dict[str, DesiredImage],
                        deployments: dict[str, DesiredDeployment],
                        promotions: Mapping[str, DesiredPromotion] | None = None) -> str:
    """A digest of what the specs ask for (including file contents, via fingerprints), and the digests
    of the promoted images: a saved plan is refused once the source environment built again."""
    summary = {
        "models": {n: [m.fingerprint, m.spec.description, m.spec.tags, m.spec.properties] for n, m in models.items()},
        "images": {n: i.fingerprint for n, i in images.items()},
        "deployments": {n: [d.id, d.target_condition, d.spec.priority, d.spec.labels, d.metrics,
                            *([repr(d.spec.rollout)] if d.spec.rollout else [])]
                        for n, d in deployments.items()},
        **({"promotions": {n: [p.fingerprint, p.source.digest] for n, p in promotions.items()}}
           if promotions else {}),
    }
    return hashlib.sha256(canonical_json(summary).encode()).hexdigest()
