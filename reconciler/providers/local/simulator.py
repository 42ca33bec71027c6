"""The local backend's simulated devices, and IoT Hub's view of them.

``Simulator`` manages the devices (add, tag, remove, make one report failure) and says which
modules a device runs; ``Fleet`` evaluates IoT Hub's rules (``hub.precedence``,
``hub.conditions``) over many devices fast: which deployments each device runs, and the
deployments' system metrics. The engine hands the simulator to the ``device`` command
(``Engine.devices``); real devices are IoT Hub's business.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence

from reconciler.errors import PermanentProviderError
from reconciler.hub import limits, manifest
from reconciler.hub.conditions import (
    Condition,
    ConditionError,
    matches,
    parse,
    parse_metric_query,
    uses_device_id,
)
from reconciler.hub.precedence import Assignment, assign, by_precedence
from reconciler.model.specs import JSON
from reconciler.model.state import DeploymentHealth, DeviceModules, SimulatedDevice
from reconciler.providers.local.rows import DeploymentRow, DeviceRow
from reconciler.providers.local.store import Store

LOCAL_IMAGE_PREFIX = "localhost/"

EffectiveModules = dict[str, tuple[str, dict[str, JSON]]]
"""module name -> (id of the deployment it comes from, its definition)"""


def parse_condition(text: str) -> Condition | None:
    """A stored target condition, or None if it does not parse (it then selects nothing,
    as the hub treats a configuration it cannot evaluate)."""
    try:
        return parse(text)
    except ConditionError:
        return None


def count_matching(condition: Condition, devices: Iterable[DeviceRow]) -> int:
    return sum(1 for device in devices if matches(condition, device.twin))


class Fleet:
    """The rules over one set of deployments. Each target condition is parsed once, and
    conditions that do not read ``deviceId`` are evaluated once per distinct twin (fleets
    have many devices and few distinct tag sets)."""

    def __init__(self, deployments: Sequence[DeploymentRow]):
        self.deployments = by_precedence(deployments)
        parsed = [(d, parse_condition(d.target_condition)) for d in self.deployments]
        valid = [(d, c) for d, c in parsed if c is not None]
        self._by_twin = [(d, c) for d, c in valid if not uses_device_id(c)]
        self._by_device = [(d, c) for d, c in valid if uses_device_id(c)]
        self._twin_matches: dict[str, tuple[DeploymentRow, ...]] = {}
        self._assignments: dict[tuple[str, ...], Assignment[DeploymentRow]] = {}

    def _targeted(self, device: DeviceRow) -> tuple[DeploymentRow, ...]:
        twin = device.twin
        key = json.dumps([device.tags, device.reported], sort_keys=True)
        shared = self._twin_matches.get(key)
        if shared is None:
            shared = self._twin_matches[key] = tuple(d for d, c in self._by_twin if matches(c, twin))
        own = [d for d, c in self._by_device if matches(c, twin)]
        if not own:
            return shared
        return by_precedence((*shared, *own))

    def assignment(self, device: DeviceRow) -> Assignment[DeploymentRow]:
        targeted = self._targeted(device)
        key = tuple(d.id for d in targeted)
        assignment = self._assignments.get(key)
        if assignment is None:
            assignment = self._assignments[key] = assign(targeted)
        return assignment

    def effective_modules(self, device: DeviceRow) -> EffectiveModules:
        """The modules the device runs and the deployment each comes from."""
        modules: EffectiveModules = {}
        for deployment in self.assignment(device).applied:
            for name, definition in manifest.modules(deployment.content).items():
                modules[name] = (deployment.id, definition)
        return dict(sorted(modules.items()))

    def statuses(self, device: DeviceRow, images: set[str]) -> dict[str, str]:
        """What the device reports for each deployment it applies: "failed" when one of the
        deployment's modules fails, "applied" while one has not reported yet, else "success"."""
        found = {}
        for deployment in self.assignment(device).applied:
            modules = manifest.modules(deployment.content)
            reports = [module_status(device, name, manifest.module_image(definition), images)
                       for name, definition in modules.items()]
            found[deployment.id] = ("failed" if "failed" in reports else "applied" if "applied" in reports
                                    else "success")
        return found

    def health(self, devices: Iterable[DeviceRow], images: set[str],
               only: set[str] | None = None) -> dict[str, DeploymentHealth]:
        """Each deployment's system metrics (of the ``only`` ids, when given), as IoT Hub computes
        them, and its custom metrics: the devices each metric query selects."""
        wanted = [d for d in self.deployments if only is None or d.id in only]
        targeted = {d.id: 0 for d in wanted}
        applied, succeeded, failed = dict(targeted), dict(targeted), dict(targeted)
        shadowed_by: dict[str, set[str]] = {d.id: set() for d in wanted}
        queries = {d.id: _metric_conditions(d.metrics) for d in wanted}
        metrics: dict[str, dict[str, int]] = {d.id: dict.fromkeys(queries[d.id], 0) for d in wanted}
        for device in devices:
            assignment = self.assignment(device)
            statuses = self.statuses(device, images)
            for deployment in assignment.targeted:
                if deployment.id not in targeted:
                    continue
                targeted[deployment.id] += 1
                if deployment.id not in statuses:
                    # Only a base deployment keeps another one from applying.
                    assert assignment.base is not None
                    shadowed_by[deployment.id].add(assignment.base.id)
            for deployment_id, status in statuses.items():
                if deployment_id in targeted:
                    applied[deployment_id] += 1
                    succeeded[deployment_id] += status == "success"
                    failed[deployment_id] += status == "failed"
            if any(queries.values()):
                twin = {**device.twin, "configurations": {
                    d.id: {"status": "Applied" if d.id in statuses else "Targeted"} for d in assignment.targeted}}
                for deployment_id, conditions in queries.items():
                    for name, condition in conditions.items():
                        metrics[deployment_id][name] += matches(condition, twin)
        return {d: DeploymentHealth(targeted[d], applied[d], succeeded[d], failed[d], tuple(sorted(shadowed_by[d])),
                                    metrics[d])
                for d in targeted}


FAIL_IMAGES_TAG = "failImages"
"""A device tag for demos and tests: the device reports failure for every module whose image
matches this glob (``*iris-scorer:3f2a*``), as if the model crashed on it."""


def module_status(device: DeviceRow, module: str, image: str, images: set[str]) -> str:
    """What a simulated device reports for one module: its ``device report`` status if set; else
    "failed" when the device fails everything, when a ``localhost/`` image was never built, or when
    the image matches the device's ``failImages`` tag; else "success"."""
    if module in device.modules:
        return device.modules[module]
    pattern = device.tags.get(FAIL_IMAGES_TAG)
    if (device.failing or (image.startswith(LOCAL_IMAGE_PREFIX) and image not in images)
            or (isinstance(pattern, str) and fnmatch.fnmatchcase(image, pattern))):
        return "failed"
    return "success"


def _metric_conditions(metrics: dict[str, str]) -> dict[str, Condition]:
    """The custom metric queries the simulator can evaluate (see ``hub.conditions.parse_metric_query``);
    others get no result, as a query the hub cannot run."""
    conditions = {}
    for name, query in metrics.items():
        try:
            conditions[name] = parse_metric_query(query)
        except ConditionError:
            continue
    return conditions


def _simulated(row: DeviceRow) -> SimulatedDevice:
    return SimulatedDevice(row.id, dict(row.tags), row.failing, dict(row.reported))


class Simulator:
    """The simulated devices of the local backend (``DeviceSimulator``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._devices: list[DeviceRow] | None = None  # read once for counting, until a device changes
        # Devices grouped by what a condition without deviceId reads (tags and reported properties): one
        # twin and its number of devices per group. Fleets have many devices and few distinct tag sets (the
        # benchmark: 50,000 devices, 100 groups), and a plan counts once per deployment change.
        self._groups: list[tuple[dict[str, JSON], int]] | None = None

    def _forget(self) -> None:
        self._devices = None
        self._groups = None

    def count(self, condition: Condition) -> int:
        """How many devices ``condition`` selects (a plan asks once per deployment change). A condition that
        reads ``deviceId`` is evaluated device by device; any other once per group of devices with the same
        tags and reported properties (``Store.device_groups``), which it cannot tell apart."""
        if uses_device_id(condition):
            if self._devices is None:
                self._devices = self._store.devices()
            return count_matching(condition, self._devices)
        if self._groups is None:
            self._groups = [({"tags": tags, "properties": {"reported": reported}}, count)
                            for tags, reported, count in self._store.device_groups()]
        return sum(count for twin, count in self._groups if matches(condition, twin))

    def select(self, condition: Condition) -> list[str]:
        """The ids of the devices ``condition`` selects, sorted."""
        if self._devices is None:
            self._devices = self._store.devices()
        return sorted(device.id for device in self._devices if matches(condition, device.twin))

    def _check(self, row: DeviceRow) -> None:
        if not limits.DEVICE_ID.match(row.id):
            raise PermanentProviderError(f"invalid device id {row.id!r}: up to 128 letters, digits and "
                                         "- . % _ * ? ! ( ) , : = @ $ '")
        for key in row.tags:
            if not limits.TAG_KEY.match(key):
                raise PermanentProviderError(f"invalid tag name {key!r}: no '.', '$' or spaces", resource=row.id)

    def _row(self, device_id: str) -> DeviceRow:
        row = self._store.device(device_id)
        if row is None:
            raise PermanentProviderError("no such device; `reconciler device ENV_DIR list` shows them",
                                         resource=device_id)
        return row

    def add(self, devices: Iterable[tuple[str, dict[str, JSON]]]) -> None:
        """Register devices in one transaction (all or none)."""
        rows = [DeviceRow(device_id, dict(tags), {}, False) for device_id, tags in devices]
        for row in rows:
            self._check(row)
        self._store.add_devices(rows)
        self._forget()

    def exists(self, device_id: str) -> bool:
        return self._store.device(device_id) is not None

    def tag(self, device_id: str, set_tags: dict[str, JSON], unset: Iterable[str] = ()) -> SimulatedDevice:
        """Set and remove twin tags; return the device as it is now."""
        row = self._row(device_id)
        removed = set(unset)
        tags = {key: value for key, value in row.tags.items() if key not in removed}
        updated = DeviceRow(row.id, {**tags, **set_tags}, row.reported, row.failing, row.modules)
        self._check(updated)
        self._store.update_device(updated)
        self._forget()
        return _simulated(updated)

    def set_failing(self, device_id: str, failing: bool = True) -> None:
        """Make the device report failure (or success again) for what it applies."""
        row = self._row(device_id)
        self._store.update_device(DeviceRow(row.id, row.tags, row.reported, failing, row.modules))

    def report(self, device_id: str, modules: dict[str, str | None], reported: dict[str, JSON]) -> SimulatedDevice:
        """Set what the device reports: a status per module ("applied", "success", "failed"; None
        forgets it) and reported properties (None removes one), as its IoT Edge runtime would."""
        row = self._row(device_id)
        statuses = {**row.modules, **modules}
        properties = {**row.reported, **reported}
        updated = DeviceRow(row.id, row.tags, {k: v for k, v in properties.items() if v is not None}, row.failing,
                            {k: v for k, v in statuses.items() if v is not None})
        self._store.update_device(updated)
        self._forget()
        return _simulated(updated)

    def remove(self, device_id: str) -> None:
        if not self._store.remove_device(device_id):
            raise PermanentProviderError("no such device; `reconciler device ENV_DIR list` shows them",
                                         resource=device_id)
        self._forget()

    def list(self) -> list[SimulatedDevice]:
        return [_simulated(row) for row in self._store.devices()]

    def show(self, device_id: str) -> DeviceModules:
        """The modules the device runs: name -> (the deployment it comes from, its image), and the
        status it reports for each."""
        row = self._row(device_id)
        effective = Fleet(self._store.deployments()).effective_modules(row)
        images = self._store.image_references()
        modules = {name: (deployment, manifest.module_image(definition))
                   for name, (deployment, definition) in effective.items()}
        return DeviceModules(_simulated(row), modules,
                             {name: module_status(row, name, image, images)
                              for name, (_, image) in modules.items()})
