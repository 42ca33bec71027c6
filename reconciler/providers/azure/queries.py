"""Device counts on IoT Hub within a query budget, batched when that is cheaper.

IoT Hub meters device queries: 20 per minute per unit on S1 (IoT Hub quotas and throttling,
"Queries (device and module)"). A plan asks how many devices each deployment change, each ring
of a rollout and each removed base deployment reaches; drift asks which deployments shadow
others. One ``SELECT COUNT()`` per question would be 100 queries for 100 deployments.

So every run has a budget (``iotHub.queryBudget`` in environment.yaml, default 50) and counts
are batched: when more conditions are asked at once than the pages of the hub's edge device
twins (1,000 twins a page), the twins are read once and the conditions evaluated here, with the
same rules the local backend uses (``hub.conditions``). Once the budget is spent, the remaining
counts are unknown (None) rather than throttled, and the run says so.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reconciler.hub.conditions import Condition, ConditionError, matches, parse

COUNT_ALIAS = "numberOfDevices"
PAGE_SIZE = 1000  # the most a query page returns (x-ms-max-item-count)
DEFAULT_BUDGET = 50
# Count queries in flight at once: each is a round trip that waits on the hub's scan of the twins, and they do not
# depend on each other. Few, so that a run stays far below the hub's query throttle (20 a minute per unit on S1,
# with bursts) and its answers keep coming in the order a person reads the plan in.
COUNT_WORKERS = 4
EDGE_DEVICES = "capabilities.iotEdge = true"

Query = Callable[[str, "str | None", "int | None", str], Any]
"""(query text, continuation token, page size, what for messages) -> a page with ``items`` and
``continuation_token``"""


class BudgetSpent(Exception):
    pass


# What target conditions may read ("a filter condition based on 'deviceId', 'tags', or 'properties.reported'"):
# only that is read of each twin, a fraction of a whole twin's bytes (its desired properties, metadata, identity
# fields, the configurations' statuses), which the SDK then deserializes into a ``Twin`` model item by item.
TWIN_FIELDS = "deviceId, tags, properties.reported AS reported"


def _twin(item: Any) -> dict[str, Any]:
    """A queried twin (the ``TWIN_FIELDS`` projection) as target conditions read it: azure-iot-hub deserializes
    every query item as a ``Twin``, so ``reported`` (no ``Twin`` field) lands in ``additional_properties``."""
    if isinstance(item, dict):
        device, tags, extra = item.get("deviceId"), item.get("tags"), item
    else:
        device, tags = getattr(item, "device_id", None), getattr(item, "tags", None)
        extra = getattr(item, "additional_properties", None) or {}
    return {"deviceId": device, "tags": tags or {}, "properties": {"reported": extra.get("reported") or {}}}


class DeviceCounter:
    """Counts edge devices per target condition for one run, within ``budget`` query pages."""

    def __init__(self, query: Query, budget: int = DEFAULT_BUDGET) -> None:
        self._query = query
        self.budget = budget
        self.spent = 0
        self._counts: dict[str, int | None] = {}
        self._twins: list[dict[str, Any]] | None = None
        self._spending = threading.Lock()

    def _page(self, text: str, token: str | None, size: int | None, what: str) -> Any:
        with self._spending:
            if self.spent >= self.budget:
                raise BudgetSpent
            self.spent += 1
        return self._query(text, token, size, what)

    def _count(self, condition: str | None, what: str) -> int:
        """One count query (its pages): the edge devices ``condition`` selects, or all of them."""
        where = f"{EDGE_DEVICES} AND ({condition})" if condition is not None else EDGE_DEVICES
        text = f"SELECT COUNT() AS {COUNT_ALIAS} FROM devices WHERE {where}"
        total, token = 0, None
        while True:
            page = self._page(text, token, None, what)
            for item in page.items or []:
                extra = item if isinstance(item, dict) else (getattr(item, "additional_properties", None) or {})
                total += int(extra.get(COUNT_ALIAS) or 0)
            token = page.continuation_token
            if not token:
                return total

    def _read_twins(self) -> list[dict[str, Any]]:
        twins, token = [], None
        while True:
            page = self._page(f"SELECT {TWIN_FIELDS} FROM devices WHERE {EDGE_DEVICES}", token, PAGE_SIZE,
                              "edge device twins")
            twins += [_twin(item) for item in page.items or []]
            token = page.continuation_token
            if not token:
                return twins

    def count(self, conditions: Sequence[str]) -> dict[str, int | None]:
        """How many edge devices each condition selects; None once the budget is spent."""
        wanted = [c for c in dict.fromkeys(conditions) if c not in self._counts]
        parsed: dict[str, Condition] = {}
        for condition in wanted:
            try:
                parsed[condition] = parse(condition)
            except ConditionError:
                continue  # the hub decides: it is counted by a query of its own
        try:
            if self._twins is None and len(parsed) > 1:
                devices = self._count(None, "edge devices")
                if math.ceil(devices / PAGE_SIZE) < len(parsed):
                    self._twins = self._read_twins()
        except BudgetSpent:
            pass
        queried = []
        for condition in wanted:
            if self._twins is not None and condition in parsed:
                self._counts[condition] = sum(1 for twin in self._twins if matches(parsed[condition], twin))
            else:
                queried.append(condition)

        def count_one(condition: str) -> int | None:
            try:
                return self._count(condition, f"device count for {condition!r}")
            except BudgetSpent:
                return None

        if len(queried) > 1:
            with ThreadPoolExecutor(max_workers=COUNT_WORKERS, thread_name_prefix="iothub-counts") as pool:
                self._counts.update(zip(queried, pool.map(count_one, queried), strict=True))
        else:
            self._counts.update((condition, count_one(condition)) for condition in queried)
        return {condition: self._counts[condition] for condition in conditions}
