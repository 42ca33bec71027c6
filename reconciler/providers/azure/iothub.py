"""IoT Hub adapter: edge deployments (configurations), device counts, rollout health, lock device.

Over azure-iot-hub 2.7 (``IoTHubConfigurationManager`` + ``IoTHubRegistryManager``), with the traps of that
SDK avoided (see /work/shared/reference/iothub-acr-wire.md):

* ``update_configuration`` PUTs the whole GET result back with an *unquoted* ``If-Match`` and gets 409 from
  the real hub. Updates here send a fresh ``Configuration`` with the unchanged content through
  ``protocol.configuration.create_or_update(id, cfg, if_match='"<etag>"')`` (what the Azure CLI does).
* ``delete_configuration`` sends the etag unquoted (or ``*``): deletes go through the protocol layer with the
  quoted etag of the configuration as it was read, so a concurrent change fails (412) instead of deleting it.
* ``get_configurations`` returns the hub's configurations (ADM ones too) in one call, without paging, and
  the hub overrides a ``top`` greater than its maximum deployment count: a hub holding 100 deployments and
  100 ADM configurations is never listed whole. ``Listing.may_be_truncated`` says when a listing may have
  left some out; edge deployments are the ones with ``content.modulesContent``.
* Aggregates (``SELECT COUNT() AS n``) come back as ``Twin`` objects with the value in
  ``additional_properties``.

Raw SDK ``Configuration`` objects hold the real registry passwords: they stay inside the provider.
``live_deployment`` is the only way out, and it redacts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.errors import PermanentProviderError
from reconciler.hub.manifest import is_layered_content, redact_passwords
from reconciler.hub.precedence import Rank, keeps_from_applying
from reconciler.model import ownership
from reconciler.model.specs import JSON
from reconciler.model.state import DeploymentHealth, LiveDeployment, RolloutMark
from reconciler.providers.azure import errors
from reconciler.providers.azure.auth import IOTHUB_TOP, HubAccess, iothub_managers
from reconciler.providers.azure.queries import DEFAULT_BUDGET, DeviceCounter
from reconciler.providers.azure.retry import Retrier

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

T = TypeVar("T")
log = logging.getLogger("reconciler.providers.azure")

SCHEMA_VERSION = "1.0"
# The most configurations one listing returns: the hub's maximum deployment count (``top`` "will be overridden
# if greater than the maximum deployment count for the IoT hub", service.json 2021-04-12), which is 100 on a
# paid hub and 10 on a free one (iot-hub-devguide-quotas-throttling), while ADM configurations have a quota of
# their own on top of that.
LISTING_CAPS = (10, 100)


class Listing(list[Any]):
    """The configurations one ``GET /configurations`` returned, and whether that may not be all of them.

    A listing as long as a cap may have been cut there: a deployment missing from it may exist. Nothing may
    be concluded from its absence: not that it is gone, not that no deployment embeds a token."""

    def __init__(self, configs: Iterable[Any]) -> None:
        super().__init__(configs)
        self.may_be_truncated = len(self) == LISTING_CAPS[0] or len(self) >= LISTING_CAPS[-1]


def quoted(etag: str) -> str:
    """An entity tag as HTTP wants it in ``If-Match``: ``"MQ=="`` (``*`` stays bare)."""
    if etag == "*" or (len(etag) > 1 and etag[0] == etag[-1] == '"'):
        return etag
    return f'"{etag}"'


def utc_iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def modules_content(cfg: Any) -> dict[str, JSON] | None:
    content = getattr(cfg, "content", None)
    modules = getattr(content, "modules_content", None) if content is not None else None
    return modules if isinstance(modules, dict) and modules else None


def is_edge_deployment(cfg: Any) -> bool:
    """IoT Edge deployments carry ``modulesContent``; ADM configurations carry device/module content."""
    return modules_content(cfg) is not None


def labels_of(cfg: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (getattr(cfg, "labels", None) or {}).items()}


def owner_of(cfg: Any) -> str | None:
    return ownership.owner_of(labels_of(cfg))


def rank(cfg: Any) -> Rank:
    """A configuration's place in IoT Hub's order (``hub.precedence``)."""
    return Rank(int(cfg.priority or 0), utc_iso(cfg.created_time_utc))


@dataclass(frozen=True)
class Metrics:
    targeted: int
    applied: int
    succeeded: int
    failed: int


METRIC_NAMES = ("targetedCount", "appliedCount", "reportedSuccessfulCount", "reportedFailedCount")


def system_metrics(cfg: Any) -> Metrics | None:
    """The hub's figures, or None when the listing left them out (the real hub may return empty
    ``systemMetrics.results``; the Azure CLI re-runs the queries in that case too)."""
    results = getattr(getattr(cfg, "system_metrics", None), "results", None) or {}
    if not all(name in results for name in METRIC_NAMES):
        return None

    def number(name: str) -> int:
        try:
            return int(results.get(name) or 0)
        except (TypeError, ValueError):
            return 0

    return Metrics(*(number(name) for name in METRIC_NAMES))


def custom_metrics(cfg: Any) -> dict[str, int]:
    """The results of the deployment's custom metrics (device counts) the hub has evaluated."""
    results = getattr(getattr(cfg, "metrics", None), "results", None) or {}
    found = {}
    for name, value in results.items():
        try:
            found[str(name)] = int(value)
        except (TypeError, ValueError):
            continue
    return found


class IoTHub:
    """One hub, for one environment. Every SDK call goes through ``retrier``; writes of configurations are
    paced per hub."""

    def __init__(self, access: HubAccess, credential: Callable[[], TokenCredential], retrier: Retrier,
                 environment: str, query_budget: int = DEFAULT_BUDGET) -> None:
        self.access = access
        self.query_budget = query_budget
        self._credential = credential
        self._retrier = retrier
        self.environment = environment
        self._pace = f"iothub:{access.host.lower()}"
        self.last_listing: Listing | None = None

    @cached_property
    def _managers(self) -> tuple[Any, Any]:
        credential = None if self.access.connection_string is not None else self._credential()
        try:
            return iothub_managers(self.access, credential, self._retrier.stats)
        except Exception as exc:  # noqa: BLE001 - e.g. a connection string the SDK cannot parse
            raise errors.to_provider_error(exc, f"IoT Hub {self.access.host} ({self.access.source})") from exc

    @property
    def configurations(self) -> Any:
        return self._managers[0]

    @property
    def registry(self) -> Any:
        return self._managers[1]

    def call(self, fn: Callable[[], T], *, what: str, write: bool = False, paced: bool = False,
             repeatable: bool = False) -> T:
        return self._retrier.call(fn, what=what, write=write, pace=self._pace if paced else None,
                                  repeatable=repeatable)

    # --- reading --------------------------------------------------------------------

    def list_configurations(self) -> Listing:
        """The hub's configurations, as many as one call returns: ``GET /configurations?top=200`` (see
        ``Listing``). ``last_listing`` keeps it for the callers that need to know whether it was whole."""
        listing = Listing(self.call(lambda: self.configurations.get_configurations(IOTHUB_TOP) or [],
                                    what=f"deployments of {self.access.host}"))
        if listing.may_be_truncated:
            log.warning("IoT Hub %s listed %d configurations, as many as one listing returns (no paging): "
                        "deployments left out are treated as unknown, never as missing", self.access.host,
                        len(listing))
        self.last_listing = listing
        return listing

    def get_configuration(self, configuration_id: str) -> Any | None:
        """``GET /configurations/{id}``; None when it does not exist."""

        def get() -> Any | None:
            try:
                return self.configurations.get_configuration(configuration_id)
            except Exception as exc:
                if errors.describe(exc).status == 404:
                    return None
                raise

        return self.call(get, what=f"deployment {configuration_id}")

    def live_deployment(self, cfg: Any, health: DeploymentHealth | None = None) -> LiveDeployment:
        """A configuration as the planner sees it: ownership keys stripped, passwords redacted."""
        labels = labels_of(cfg)
        owner = ownership.owner_of(labels)
        content = redact_passwords(modules_content(cfg) or {})
        metrics = getattr(cfg, "metrics", None)
        return LiveDeployment(
            id=cfg.id,
            name=labels.get(ownership.NAME, cfg.id) if owner else cfg.id,
            owner=owner,
            content_hash=labels.get(ownership.FINGERPRINT) if owner else None,
            content=content,
            target_condition=cfg.target_condition or "",
            priority=int(cfg.priority or 0),
            labels=ownership.user_tags(labels),
            metrics={str(k): str(v) for k, v in ((getattr(metrics, "queries", None) or {}).items())},
            layered=is_layered_content(content),
            created=utc_iso(cfg.created_time_utc),
            health=health,
            rollout=ownership.rollout_mark(labels) if owner else RolloutMark(),
        )

    def candidate_health(self, configs: Iterable[Any]) -> dict[str, DeploymentHealth]:
        """Health of this environment's rollout candidates only: the figures of the listing, or of one
        read of the configuration when the listing left them out. None of them (the hub has not
        evaluated the candidate yet) leaves it out: gates then wait, they never pass on no figures."""
        health = {}
        for cfg in configs:
            if owner_of(cfg) != self.environment or ownership.ROLLOUT_RING not in labels_of(cfg):
                continue
            if (found := self._figures(cfg)) is not None:
                cfg, metrics = found
                health[cfg.id] = DeploymentHealth(metrics.targeted, metrics.applied, metrics.succeeded,
                                                  metrics.failed, metrics=custom_metrics(cfg))
        return health

    def _figures(self, cfg: Any) -> tuple[Any, Metrics] | None:
        """A deployment and its system metrics: the listing's, or, for one of ours the listing has none
        for, those of one more read (never count queries); None when the hub has not evaluated it."""
        metrics = system_metrics(cfg)
        if metrics is None and owner_of(cfg) == self.environment and (fresh := self.get_configuration(cfg.id)):
            cfg, metrics = fresh, system_metrics(fresh)
        return (cfg, metrics) if metrics is not None else None

    def health(self, configs: Iterable[Any]) -> dict[str, DeploymentHealth]:
        """Rollout health of every edge deployment, from the system metrics of the listing (or one read
        of a deployment of ours the listing has none for; none then: not evaluated yet, left out).
        Deployments of this environment that do not apply on every device they target get
        ``shadowed_by``: the base deployments that take precedence and share at least one device
        with them, counted in one batch."""
        edge = [cfg for cfg in configs if is_edge_deployment(cfg)]
        bases = [cfg for cfg in edge if not is_layered_content(modules_content(cfg) or {})]
        figures: dict[str, tuple[Any, Metrics]] = {}
        for cfg in edge:
            if (found := self._figures(cfg)) is not None:
                figures[cfg.id] = found
        pairs: dict[str, list[tuple[str, str]]] = {}
        for cfg, metrics in figures.values():
            if owner_of(cfg) == self.environment and metrics.applied < metrics.targeted:
                layered = is_layered_content(modules_content(cfg) or {})
                pairs[cfg.id] = [(other.id, f"({cfg.target_condition}) AND ({other.target_condition})")
                                 for other in bases
                                 if other.id != cfg.id and keeps_from_applying(rank(other), rank(cfg), layered)]
        counts = self.count_many([query for found in pairs.values() for _, query in found])
        health = {}
        for cfg_id, (cfg, metrics) in figures.items():
            shadows = sorted(other for other, query in pairs.get(cfg_id, []) if counts.get(query))
            health[cfg_id] = DeploymentHealth(metrics.targeted, metrics.applied, metrics.succeeded,
                                              metrics.failed, tuple(shadows), custom_metrics(cfg))
        return health

    @cached_property
    def counter(self) -> DeviceCounter:
        return DeviceCounter(self._query_page, self.query_budget)

    def device_ids(self, target_condition: str) -> list[str]:
        """The IoT Edge devices a target condition selects, by id: one ``SELECT deviceId`` query, following
        continuation tokens if the hub pages the answer."""
        query = f"SELECT deviceId FROM devices WHERE capabilities.iotEdge = true AND ({target_condition})"
        what = f"devices of {target_condition!r}"
        found: list[str] = []
        token = None
        while True:
            page = self._query_page(query, token, None, what)
            for item in page.items or []:
                extra = item if isinstance(item, dict) else (getattr(item, "additional_properties", None) or {})
                device = getattr(item, "device_id", None) or extra.get("deviceId")
                if device:
                    found.append(str(device))
            token = page.continuation_token
            if not token:
                return sorted(found)

    def _query_page(self, query: str, token: str | None, size: int | None, what: str) -> Any:
        from azure.iot.hub.models import QuerySpecification

        return self.call(lambda: self.registry.query_iot_hub(QuerySpecification(query=query), token, size),
                         what=what)

    def count_many(self, conditions: Sequence[str]) -> dict[str, int | None]:
        """How many IoT Edge devices each condition selects (as the hub's own ``targetedCount``: the lock
        device is not one); None where the run's query budget is spent (see ``queries``)."""
        assert self.registry is not None  # the SDK client, built once here: the counts may run in threads
        return self.counter.count(conditions)

    def count_devices(self, target_condition: str) -> int:
        count = self.count_many([target_condition])[target_condition]
        if count is None:
            raise PermanentProviderError(f"this run's IoT Hub query budget ({self.query_budget}) is spent; raise "
                                         "iotHub.queryBudget in environment.yaml, or run again in a minute")
        return count

    # --- writing --------------------------------------------------------------------

    def _configuration(self, configuration_id: str, content: Any, labels: dict[str, str], target_condition: str,
                       priority: int, metrics: dict[str, str], schema_version: str = SCHEMA_VERSION) -> Any:
        from azure.iot.hub.models import Configuration, ConfigurationContent, ConfigurationMetrics

        if ownership.owner_of(labels) != self.environment:  # the one rule no bug may break
            raise PermanentProviderError(f"refusing to write a deployment not labelled as owned by environment "
                                         f"{self.environment!r}", resource=configuration_id)
        if isinstance(content, dict):
            content = ConfigurationContent(modules_content=content)
        return Configuration(id=configuration_id, schema_version=schema_version, labels=labels, content=content,
                             target_condition=target_condition, priority=priority,
                             metrics=ConfigurationMetrics(queries=dict(metrics)))

    def create(self, configuration_id: str, content: dict[str, JSON], labels: dict[str, str],
               target_condition: str, priority: int, metrics: dict[str, str]) -> None:
        """``PUT /configurations/{id}`` without ``If-Match``. A 409 (the id exists: an earlier apply was
        interrupted after the hub created it, or the answer to this very create was lost and it was sent
        again) is success when the existing configuration is ours with the same content, else a permanent
        error. That makes the create safe to repeat."""
        cfg = self._configuration(configuration_id, content, labels, target_condition, priority, metrics)

        def put() -> bool:
            try:
                self.configurations.create_configuration(cfg)
            except Exception as exc:
                if errors.describe(exc).status == 409:
                    return False
                raise
            return True

        if self.call(put, what=f"deployment {configuration_id}", write=True, paced=True, repeatable=True):
            return
        existing = self.get_configuration(configuration_id)
        existing_labels = labels_of(existing) if existing is not None else {}
        if (existing is not None and ownership.owner_of(existing_labels) == self.environment
                and existing_labels.get(ownership.FINGERPRINT) == labels.get(ownership.FINGERPRINT)
                and redact_passwords(modules_content(existing) or {}) == redact_passwords(content)):
            return
        raise PermanentProviderError(
            "a deployment with this id exists already and was not created by this environment with this "
            "content; delete it or rename the Deployment spec", resource=configuration_id)

    def update(self, configuration_id: str, labels: dict[str, str], target_condition: str, priority: int,
               metrics: dict[str, str]) -> None:
        """Change the mutable fields of a deployment (the apply path checked it is owned): read it (for its
        etag and unchanged content), then ``PUT`` a fresh ``Configuration`` with ``If-Match: "<etag>"``."""
        current = self.get_configuration(configuration_id)
        if current is None:
            raise PermanentProviderError("this deployment no longer exists; run `reconciler plan` again",
                                         resource=configuration_id)
        # Ownership stays as the hub has it; the rollout keys are the caller's (a step sets or clears them).
        owned = {k: v for k, v in labels_of(current).items() if k in ownership.OWNERSHIP_KEYS}
        cfg = self._configuration(configuration_id, current.content, {**labels, **owned}, target_condition,
                                  priority, metrics, current.schema_version or SCHEMA_VERSION)
        etag = quoted(current.etag or "*")

        def put() -> bool:
            try:
                self.configurations.protocol.configuration.create_or_update(configuration_id, cfg, if_match=etag)
            except Exception as exc:
                if errors.describe(exc).status == 412:
                    return False
                raise
            return True

        what = f"deployment {configuration_id}"
        if self.call(put, what=what, write=True, paced=True, repeatable=True):
            return
        # 412: the etag moved. Our own write whose answer was lost moves it too: done if the hub has what we sent.
        now = self.get_configuration(configuration_id)
        if now is None or (labels_of(now), now.target_condition, int(now.priority or 0),
                           dict(getattr(now.metrics, "queries", None) or {})) != (
                               cfg.labels, target_condition, priority, dict(metrics)):
            raise PermanentProviderError(
                "it changed since it was read (the etag no longer matches): another run or a person modified it; "
                "run `reconciler plan` again", resource=configuration_id)

    def delete(self, cfg: Any) -> None:
        """``DELETE /configurations/{id}`` with the quoted etag it was read with. Gone already: done."""
        etag = quoted(cfg.etag or "*")

        def delete() -> None:
            try:
                self.configurations.protocol.configuration.delete(cfg.id, if_match=etag)
            except Exception as exc:
                if errors.describe(exc).status == 404:
                    return
                raise

        self.call(delete, what=f"deployment {cfg.id}", write=True, paced=True, repeatable=True)
