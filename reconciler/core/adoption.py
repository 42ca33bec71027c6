"""Adoption: a Deployment spec taking over a deployment the reconciler did not create (``spec.adopt``).

``reconciler import`` writes specs that name the unmanaged deployment they describe. The planner
then treats that one deployment as if it were owned under the spec's name:

* **same content** (the spec renders exactly the live ``modulesContent``, compared as canonical JSON):
  the desired id *is* the live id, so the plan is an in-place update that adds the ownership labels
  (plus any target condition, priority, label or metric the spec changes). No device sees a change.
  Once adopted, the deployment keeps its id for as long as the content (and its content hash, which
  the ownership labels record) stays the same.
* **other content**: the usual replace (create ``<name>-<hash>``, then delete the adopted one).

Both are shown with the reason "adopts unmanaged deployment ...", and the apply path
(``providers.apply``) lets exactly these changes touch an unowned deployment, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from reconciler.hub.manifest import canonical_json
from reconciler.model.plan import Action, Change, DesiredDeployment, FieldChange
from reconciler.model.specs import JSON, DeploymentSpec, Kind, ResourceKey
from reconciler.model.state import LiveDeployment, Snapshot


def same_content(live: dict[str, JSON], desired: dict[str, JSON]) -> bool:
    """Whether two ``modulesContent`` are the same bytes once keys are sorted (passwords redacted)."""
    return canonical_json(live) == canonical_json(desired)


def adopted_id(spec: DeploymentSpec, content: dict[str, JSON], digest: str, snapshot: Snapshot) -> str | None:
    """The id the spec's deployment keeps: the adopted deployment's, while its content is the spec's.
    None when the spec adopts nothing, the deployment is gone, or the content differs (a new id)."""
    if spec.adopt is None or spec.rollout is not None:
        return None
    live = next((d for d in snapshot.deployments if d.id == spec.adopt), None)
    if live is None:
        return None
    if live.owner is None:
        return live.id if same_content(live.content, content) else None
    if live.owner == snapshot.environment and live.name == spec.name and live.content_hash == digest:
        return live.id  # adopted earlier: same content, same credentials
    return None


def candidates(deployments: dict[str, DesiredDeployment], snapshot: Snapshot) -> dict[str, LiveDeployment]:
    """Spec name -> the unmanaged deployment it adopts (only those that exist and nobody owns)."""
    unmanaged = {d.id: d for d in snapshot.deployments if d.owner is None}
    return {name: unmanaged[d.spec.adopt] for name, d in deployments.items()
            if d.spec.adopt in unmanaged and d.spec.rollout is None}


def with_adopted(owned: dict[str, list[Any]], adoptions: dict[str, LiveDeployment]) -> dict[str, list[Any]]:
    """The owned deployments by name, plus each adopted deployment under the name of its spec."""
    merged = {name: list(found) for name, found in owned.items()}
    for name, live in adoptions.items():
        merged.setdefault(name, []).append(live)
    return merged


def adopting(results: Iterable[Any], deployments: dict[str, DesiredDeployment], adoptions: dict[str, LiveDeployment],
             environment: str) -> Iterator[Any]:
    """The deployment plan with each adoption made explicit: an adopted deployment whose content and
    mutable fields already match (which the planner reports unchanged) becomes an update, and every change
    of an adopted deployment says so and shows the owner it gets."""
    for result in results:
        if isinstance(result, ResourceKey) and result.kind is Kind.DEPLOYMENT and result.name in adoptions:
            live = adoptions[result.name]
            yield Change(result, Action.UPDATE, f"adopts unmanaged deployment {live.id} (spec.adopt): "
                         "adds the ownership labels; the content is unchanged",
                         (FieldChange("owner", None, environment),), desired=deployments[result.name], actual=live)
            continue
        if isinstance(result, Change) and result.key.name in adoptions and result.key.kind is Kind.DEPLOYMENT:
            live = adoptions[result.key.name]
            if isinstance(result.actual, LiveDeployment) and result.actual.id == live.id:
                owner = (FieldChange("owner", None, environment),)
                if result.action is Action.UPDATE:
                    result = replace(result, reason=f"adopts unmanaged deployment {live.id} (spec.adopt): "
                                     f"adds the ownership labels; {result.reason}", fields=owner + result.fields)
                elif result.action is Action.REPLACE:
                    result = replace(result, reason=f"adopts unmanaged deployment {live.id} (spec.adopt), whose "
                                     f"content the spec does not reproduce: {result.reason}",
                                     fields=owner + result.fields)
        yield result
