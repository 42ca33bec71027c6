"""IoT Hub's rules for edge deployments, as pure functions over stored rows.

Per device, among the deployments whose target condition matches its twin:

* the **base** (standard) deployment with the highest priority applies; ties go to the
  most recently created (``DeploymentRow.precedence``);
* every matching **layered** deployment with a priority higher than that base's merges on
  top (all of them when no base applies); on a module of the same name the higher
  precedence wins.

From that follow the modules a device runs and each deployment's system metrics:
targeted, applied, succeeded, failed, and which deployments win where it does not apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.core.target_condition import (
    BoolOp,
    Comparison,
    Condition,
    ConditionError,
    IsDefined,
    Not,
    PathRef,
    matches,
    parse,
)
from reconciler.model.specs import JSON
from reconciler.model.state import DeploymentHealth
from reconciler.providers.local.rows import DeploymentRow, DeviceRow

LOCAL_IMAGE_PREFIX = "localhost/"
LAYERED_MODULE_PREFIX = "properties.desired.modules."

EffectiveModules = dict[str, tuple[str, dict[str, JSON]]]
"""module name -> (id of the deployment it comes from, its definition)"""


@dataclass(frozen=True)
class Assignment:
    """What the hub does for one device."""

    targeted: tuple[DeploymentRow, ...]  # descending precedence
    base: DeploymentRow | None
    layers: tuple[DeploymentRow, ...]  # ascending precedence: later ones win

    @property
    def applied(self) -> tuple[DeploymentRow, ...]:
        return ((self.base,) if self.base else ()) + self.layers


def parse_condition(text: str) -> Condition | None:
    """A stored target condition, or None if it does not parse (it then selects nothing,
    as the hub treats a configuration it cannot evaluate)."""
    try:
        return parse(text)
    except ConditionError:
        return None


def count_matching(condition: Condition, devices: Iterable[DeviceRow]) -> int:
    return sum(1 for device in devices if matches(condition, device.twin))


def deployment_modules(deployment: DeploymentRow) -> dict[str, dict[str, JSON]]:
    """The custom modules a deployment's ``$edgeAgent`` content defines."""
    agent = deployment.content.get("$edgeAgent") or {}
    if not deployment.layered:
        modules: dict[str, dict[str, JSON]] = (agent.get("properties.desired") or {}).get("modules") or {}
        return modules
    return {key[len(LAYERED_MODULE_PREFIX):]: value for key, value in agent.items()
            if key.startswith(LAYERED_MODULE_PREFIX) and "." not in key[len(LAYERED_MODULE_PREFIX):]}


def module_image(definition: dict[str, JSON]) -> str:
    image = (definition.get("settings") or {}).get("image", "")
    return str(image)


def uses_device_id(condition: Condition) -> bool:
    """Whether a condition reads ``deviceId`` (else devices with the same tags and reported
    properties are selected alike)."""
    if isinstance(condition, BoolOp):
        return uses_device_id(condition.left) or uses_device_id(condition.right)
    if isinstance(condition, Not):
        return uses_device_id(condition.operand)
    if isinstance(condition, IsDefined):
        return condition.path[0] == "deviceId"
    if isinstance(condition, Comparison):
        return any(isinstance(side, PathRef) and side.path[0] == "deviceId"
                   for side in (condition.left, condition.right))
    return False


def _assign(targeted: tuple[DeploymentRow, ...]) -> Assignment:
    base = next((d for d in targeted if not d.layered), None)
    floor = base.priority if base else None
    layers = tuple(reversed([d for d in targeted if d.layered and (floor is None or d.priority > floor)]))
    return Assignment(targeted, base, layers)


class Hub:
    """The rules over one set of deployments. Each target condition is parsed once, and
    conditions that do not read ``deviceId`` are evaluated once per distinct twin (fleets
    have many devices and few distinct tag sets)."""

    def __init__(self, deployments: Sequence[DeploymentRow]):
        self.deployments = sorted(deployments, key=lambda d: d.precedence, reverse=True)
        parsed = [(d, parse_condition(d.target_condition)) for d in self.deployments]
        valid = [(d, c) for d, c in parsed if c is not None]
        self._by_twin = [(d, c) for d, c in valid if not uses_device_id(c)]
        self._by_device = [(d, c) for d, c in valid if uses_device_id(c)]
        self._twin_matches: dict[str, tuple[DeploymentRow, ...]] = {}
        self._assignments: dict[tuple[str, ...], Assignment] = {}

    def _targeted(self, device: DeviceRow) -> tuple[DeploymentRow, ...]:
        twin = device.twin
        key = json.dumps([device.tags, device.reported], sort_keys=True)
        shared = self._twin_matches.get(key)
        if shared is None:
            shared = self._twin_matches[key] = tuple(d for d, c in self._by_twin if matches(c, twin))
        own = [d for d, c in self._by_device if matches(c, twin)]
        if not own:
            return shared
        return tuple(sorted((*shared, *own), key=lambda d: d.precedence, reverse=True))

    def assignment(self, device: DeviceRow) -> Assignment:
        targeted = self._targeted(device)
        key = tuple(d.id for d in targeted)
        assignment = self._assignments.get(key)
        if assignment is None:
            assignment = self._assignments[key] = _assign(targeted)
        return assignment

    def effective_modules(self, device: DeviceRow) -> EffectiveModules:
        """The modules the device runs and the deployment each comes from."""
        modules: EffectiveModules = {}
        for deployment in self.assignment(device).applied:
            for name, definition in deployment_modules(deployment).items():
                modules[name] = (deployment.id, definition)
        return dict(sorted(modules.items()))

    def health(self, devices: Iterable[DeviceRow], images: set[str]) -> dict[str, DeploymentHealth]:
        """Each deployment's system metrics. A device reports success for a deployment it
        applies when every ``localhost/`` image the deployment uses was built and the
        device is not marked failing."""
        images_ok = {d.id: all(image in images for image in map(module_image, deployment_modules(d).values())
                               if image.startswith(LOCAL_IMAGE_PREFIX))
                     for d in self.deployments}
        targeted = dict.fromkeys(images_ok, 0)
        applied = dict.fromkeys(images_ok, 0)
        succeeded = dict.fromkeys(images_ok, 0)
        shadowed_by: dict[str, set[str]] = {d: set() for d in images_ok}
        for device in devices:
            assignment = self.assignment(device)
            winners = {d.id for d in assignment.applied}
            for deployment in assignment.targeted:
                targeted[deployment.id] += 1
                if deployment.id not in winners:
                    # Only a base deployment keeps another one from applying.
                    assert assignment.base is not None
                    shadowed_by[deployment.id].add(assignment.base.id)
            for deployment_id in winners:
                applied[deployment_id] += 1
                if images_ok[deployment_id] and not device.failing:
                    succeeded[deployment_id] += 1
        return {d: DeploymentHealth(targeted[d], applied[d], succeeded[d], applied[d] - succeeded[d],
                                    tuple(sorted(shadowed_by[d])))
                for d in images_ok}
