"""The engine: load the specs, read the actual state, plan, apply. Composition only.

    specs --load--> DesiredState --fingerprint--> Fingerprints ┐
    provider --read_snapshot--------------------> Snapshot     ├--plan--> Plan --Executor--> adapters
                                                               ┘
Apply runs under the provider's lock and always re-reads the state under it, so two
applies never act on the same snapshot; a saved plan is applied only if both the specs
and the actual state are still exactly what it was made from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core import coverage, model_sources, planner
from reconciler.core.rollout import ring_condition
from reconciler.errors import Aborted, PlanRefused, ProviderError, ReconcilerError, SpecError
from reconciler.model.diagnostics import Diagnostic
from reconciler.model.plan import Action, Change, DesiredDeployment, Plan, RolloutStatus, StepKind
from reconciler.model.specs import DesiredState, Fingerprints, ImageSpec, Kind
from reconciler.model.state import LiveDeployment, PromotionSource, Snapshot
from reconciler.providers.base import (
    Check,
    ConcurrentBuilds,
    DeviceListing,
    DeviceSimulator,
    Diagnosable,
    ImageContents,
    LockInfo,
    Metered,
    ModelUris,
    Progress,
    PromotionSources,
    Provider,
    ProviderFactory,
    SerializedProgress,
    SilentProgress,
    Simulated,
)
from reconciler.providers.registry import open_provider
from reconciler.spec import memo
from reconciler.spec.fingerprints import HashCache, bytes_to_hash, compute_fingerprints
from reconciler.spec.folders import Folders
from reconciler.spec.loader import load_with_verdict
from reconciler.spec.memo import MEMO_FILE

if TYPE_CHECKING:
    # Each command imports only what it runs: plan and validate never load the apply path, drift, lineage or
    # the behaviour runner (its HTTP client and subprocess modules), unless a plan has samples to run.
    from reconciler.core import drift as drift_core
    from reconciler.core.plan_json import SavedPlan
    from reconciler.model.behaviour_results import ImageBehaviour
    from reconciler.model.lineage import Lineage
    from reconciler.providers.apply import Executor

NOW_VARIABLE = "RECONCILER_NOW"
# What `apply --rollouts-only` carries out: a rollout's progress, never new content.
PROGRESS_STEPS = frozenset({StepKind.ADVANCE, StepKind.COMPLETE, StepKind.ROLLBACK, StepKind.PAUSE})
CACHE_FILE = "fingerprint-cache.json"
PROGRESS_THRESHOLD = 50_000_000  # bytes of model files worth telling the user about


def cache_directory(desired: DesiredState) -> Path:
    """Where the fingerprint cache lives: beside the local state, git-ignored."""
    override = os.environ.get("RECONCILER_CACHE_DIR")
    if override:
        return Path(override)
    environment = desired.environment
    return environment.repository_root / ".reconciler" / environment.name


def system_clock() -> datetime:
    """The time rollouts are judged and stamped at: now, or ``$RECONCILER_NOW`` (ISO 8601), which
    demos and tests use to let a soak time pass without waiting for it."""
    pinned = os.environ.get(NOW_VARIABLE)
    if pinned:
        try:
            moment = datetime.fromisoformat(pinned.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ReconcilerError(f"{NOW_VARIABLE}={pinned!r} is not an ISO 8601 time such as "
                                  "2026-11-28T10:00:00Z") from exc
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc)


def holder_name() -> str:
    """Who is applying, for lock messages: ``user@host pid N`` (or the CI run)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    run = os.environ.get("GITHUB_RUN_ID")
    where = f"GitHub run {run}" if run else f"pid {os.getpid()}"
    return f"{user}@{socket.gethostname()} {where}"


@dataclass(frozen=True)
class BehaviourOptions:
    """Run the samples of new image versions in plans: ``skip`` (``--skip-behaviour``) only says
    which were not run; ``python`` is an interpreter to use instead of the cached environments."""

    skip: bool = False
    python: Path | None = None


@dataclass
class ApplyResult:
    plan: Plan
    applied: list[Change]
    from_saved_plan: bool


class Engine:
    """One environment folder and its provider."""

    def __init__(self, environment_dir: Path, progress: Progress | None = None,
                 provider_factory: ProviderFactory = open_provider, clock: Callable[[], datetime] = system_clock):
        self.environment_dir = Path(environment_dir)
        self.clock = clock
        self.progress = progress or SilentProgress()
        self._folders = Folders()  # the model folders' listings: walked once for the checks and the fingerprints
        self.desired, self._verdict = load_with_verdict(self.environment_dir, self._folders)
        self._provider_factory = provider_factory
        self._provider: Provider | None = None
        self._fingerprints: Fingerprints | None = None
        self.bytes_hashed = 0  # model bytes read to fingerprint: 0 when every file is in the cache

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = self._provider_factory(self.desired.environment)
        return self._provider

    def close(self) -> None:
        finish = getattr(self.progress, "finish", None)  # a progress bar still drawn goes before other output
        if callable(finish):
            finish()
        if self._provider is not None:
            self._provider.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- planning -------------------------------------------------------------------

    def fingerprints(self, snapshot: Snapshot | None = None) -> Fingerprints:
        """Fingerprint models and images, reading only files whose size or mtime changed. Models whose source is
        a registered version take the fingerprint the backend reports (from ``snapshot``, or a fresh one)."""
        if self._fingerprints is None:
            registered = None
            if self._has_registered_sources:
                registered = model_sources.registered_fingerprints(
                    self.desired, snapshot if snapshot is not None else self.snapshot())
            directory = cache_directory(self.desired)
            cache_path = directory / CACHE_FILE

            def load_cache() -> HashCache:
                return (HashCache.from_json(cache_path.read_text(), self._folders) if cache_path.exists()
                        else HashCache(folders=self._folders))

            total = 0
            done = 0

            def announce(count: int) -> None:
                nonlocal total
                total = count
                if total >= PROGRESS_THRESHOLD:
                    self.progress.step(f"hashing {total / 1e6:.0f} MB of model files")

            def on_bytes(count: int) -> None:
                nonlocal done
                done += count
                self.progress.advance(done, total)

            cache: HashCache | None
            if self._verdict is not None and registered is None and not self.desired.promotions:
                # An unchanged load: the fingerprints of unchanged files come from the last run's (``spec.memo``).
                self._fingerprints, cache = memo.fingerprints(self.desired, directory / MEMO_FILE, self._verdict,
                                                              load_cache, announce, on_bytes)
            else:
                cache = load_cache()
                announce(bytes_to_hash(self.desired, cache))
                self._fingerprints = compute_fingerprints(self.desired, cache, on_bytes, registered)
            if cache is not None:
                self.bytes_hashed = cache.bytes_hashed
                if cache.dirty:
                    directory.mkdir(parents=True, exist_ok=True)
                    cache_path.write_text(cache.to_json())
        return self._fingerprints

    @property
    def _has_registered_sources(self) -> bool:
        return any(spec.registered is not None for spec in self.desired.models.values())

    def snapshot(self, *, health: bool = False, deployments_only: bool = False) -> Snapshot:
        return self.provider.read_snapshot(self.desired, health=health, deployments_only=deployments_only)

    def plan(self, *, prune: bool = False, snapshot: Snapshot | None = None, count_devices: bool = True,
             behaviour: BehaviourOptions | None = None, read_uris: bool = True) -> Plan:
        """``read_uris``: check the content of the models the plan registers from a URI (only plans that may be
        applied need it: drift and rollout steps do not register models)."""
        if snapshot is None and self._has_registered_sources:  # their fingerprints come from the snapshot
            snapshot = self.snapshot()
        fingerprints = self.fingerprints(snapshot)
        snapshot = snapshot or self.snapshot()
        plan = planner.plan(self.desired, fingerprints, snapshot, prune=prune, now=self.clock(),
                            sources=self.promotion_sources())
        if read_uris:
            self._check_model_uris(plan)
        plan = self._with_device_counts(plan, snapshot) if count_devices else plan
        return self._with_behaviour(plan, snapshot, behaviour) if behaviour is not None else plan

    def _check_model_uris(self, plan: Plan) -> None:
        """Read the URI of each model the plan registers from one (``spec.source.uri``) and refuse the plan, at
        the spec's ``digest`` field, when the content is not the pinned one: a plan that cannot be applied is
        not shown, and an apply stops here, before any change."""
        to_read = model_sources.uris_to_read(plan)
        if not to_read:
            return
        provider = self.provider
        if not isinstance(provider, ModelUris):
            raise ReconcilerError(f"the {self.desired.environment.provider!r} provider cannot read model URIs "
                                  "(spec.source.uri)")
        read = {name: (source, provider.model_uri_digest(source, self.progress)) for name, source in to_read}
        if mismatches := model_sources.uri_mismatches(read):
            raise SpecError(mismatches)

    def promotion_sources(self) -> dict[str, PromotionSource]:
        """What each promoted image's source environment holds for the label its specs give: one read of
        that environment's backend (its own provider, opened and closed here) per image."""
        if not self.desired.promotions:
            return {}
        labels = {name: planner.image_label(self.fingerprints().images[name]) for name in self.desired.promotions}
        found: dict[str, PromotionSource] = {}
        by_source: dict[Path, list[str]] = {}
        for name, spec in sorted(self.desired.promotions.items()):
            by_source.setdefault(spec.source_directory, []).append(name)
        for names in by_source.values():
            source = self.desired.promotions[names[0]].source.environment
            provider = self._provider_factory(source)
            try:
                if not isinstance(provider, PromotionSources):
                    raise ReconcilerError(f"the {source.provider!r} provider cannot promote images")
                for name in names:
                    found[name] = provider.promotable_image(self.desired.promotions[name].source_image, labels[name])
            finally:
                provider.close()
        return found

    def _with_device_counts(self, plan: Plan, snapshot: Snapshot) -> Plan:
        """Say how many devices each deployment change reaches, each ring of a rollout in flight (a ring
        reaches the devices of the rings before it too), and warn about devices the plan leaves with no
        base deployment. All counts are asked in one batch (``Provider.count_many``)."""
        conditions: dict[int, str] = {}
        for index, change in enumerate(plan.changes):
            if change.step is not None:
                conditions[index] = change.step.target_condition
            elif isinstance(change.desired, DesiredDeployment):
                conditions[index] = change.desired.target_condition
            elif isinstance(change.actual, LiveDeployment):
                conditions[index] = change.actual.target_condition
        rings = {status.deployment: self._ring_conditions(status) for status in plan.rollouts}
        uncovered = coverage.uncovered(plan, snapshot)
        counts = self.provider.count_many([*conditions.values(), *(c for r in rings.values() for c in r.values()),
                                           *(query for _, _, query in uncovered)])
        changes = tuple(replace(change, devices=counts[conditions[i]]) if i in conditions else change
                        for i, change in enumerate(plan.changes))
        rollouts = tuple(
            replace(status, ring_devices={ring: count for ring, condition in rings[status.deployment].items()
                                          if (count := counts[condition]) is not None})
            for status in plan.rollouts)
        warnings = list(plan.warnings)
        for change, removed, query in uncovered:
            if counts[query]:
                spec = self.desired.deployments.get(change.key.name)
                where = spec.location if spec else self.desired.environment.location
                warnings.append(Diagnostic(where, str(change.key), "", (
                    f"{counts[query]} device(s) that {removed.id} reaches now would be left with no base "
                    "deployment (they keep running their modules, unmanaged)")))
        if any(count is None for count in counts.values()):
            spent, budget = self.query_usage() or (0, 0)
            warnings.append(Diagnostic(self.desired.environment.location, f"environment/{plan.environment}", "",
                                       f"some device counts are left out: this run's device-query budget ({budget}) "
                                       "is spent; raise it (azure.iotHub.queryBudget) or plan again in a minute"))
        return replace(plan, changes=changes, rollouts=rollouts, warnings=tuple(warnings))

    def _ring_conditions(self, status: RolloutStatus) -> dict[str, str]:
        """Ring name (and "all") -> the condition the candidate has on that ring."""
        spec = self.desired.deployments.get(status.deployment)
        if spec is None or spec.rollout is None or status.state == "failed":
            return {}
        condition = planner.target_condition(spec)
        found = {ring.name: ring_condition(condition, spec.rollout, ring) for ring in spec.rollout.rings}
        found["all"] = condition
        return found

    def query_usage(self) -> tuple[int, int] | None:
        """(spent, budget) of the backend's metered reads in this run, if it meters them."""
        return self.provider.query_usage() if isinstance(self.provider, Metered) else None

    def throttling(self) -> tuple[int, float] | None:
        """(requests the backend throttled and that were sent again, seconds waited) in this run, if it says."""
        return self.provider.throttled_requests() if isinstance(self.provider, Metered) else None

    def rollout_status(self) -> tuple[RolloutStatus, ...]:
        """Where each staged rollout stands (as a plan judges it now), with the devices of each ring."""
        return self.plan(read_uris=False).rollouts

    # --- applying -------------------------------------------------------------------

    def apply(self, *, prune: bool = False, saved: SavedPlan | None = None,
              confirm: Callable[[Plan], bool] | None = None, rollouts_only: bool = False,
              behaviour: BehaviourOptions | None = None) -> ApplyResult:
        """Plan under the lock and apply. With ``saved``, refuse unless the fresh plan is
        the saved one (same specs, same actual state, same actions). With ``rollouts_only``, carry
        out only the progress of rollouts in flight (advance, complete, roll back, pause). With
        ``behaviour``, refuse when a new image version exceeds a behaviour gate (the runs come from
        the plan's cache)."""
        if saved is not None:
            prune = saved.prune
        with self.provider.lock(holder_name()) as held:
            if rollouts_only:  # the snapshot below lists no models: registered sources are resolved here first
                self.fingerprints()
            plan = self.plan(prune=prune, count_devices=not rollouts_only,
                             snapshot=self.snapshot(deployments_only=True) if rollouts_only else None,
                             behaviour=None if rollouts_only else behaviour, read_uris=not rollouts_only)
            if rollouts_only:
                plan = replace(plan, changes=tuple(c for c in plan.changes if c.action is Action.ROLLOUT
                                                   and c.step is not None and c.step.kind in PROGRESS_STEPS))
            if saved is not None:
                self._check_saved(saved, plan)
            if plan.behaviour is not None and plan.behaviour.failures:
                raise PlanRefused("a behaviour gate is exceeded, so nothing was applied: "
                                  + "; ".join(plan.behaviour.failures))
            if not plan.has_changes:
                return ApplyResult(plan, [], saved is not None)
            if confirm is not None and not confirm(plan):
                raise Aborted("Apply cancelled: nothing was changed.")
            from reconciler.providers.apply import Executor

            adapters = self.provider.adapters()
            slots = adapters.images.build_slots if isinstance(adapters.images, ConcurrentBuilds) else 1
            progress = SerializedProgress(self.progress) if slots > 1 else self.progress
            executor = Executor(self.desired.environment, adapters, progress, self.clock)
            applied: list[Change] = []
            for group in _concurrent_groups(plan.changes, slots):
                for change in group:
                    progress.step(f"{change.action.symbol} {change.key} ({change.target})")
                try:
                    held.renew_if_needed()
                    failure = _apply_group(executor, group, slots, applied)
                except ProviderError as error:
                    failure = error
                if failure is not None:
                    raise failure.with_context(
                        f"applied {len(applied)} of {len(plan.changes)} changes before this one; "
                        "run `reconciler plan` to see what remains, then apply again") from failure
            return ApplyResult(plan, applied, saved is not None)

    def _check_saved(self, saved: SavedPlan, plan: Plan) -> None:
        if saved.environment != plan.environment:
            raise PlanRefused(f"the plan is for environment {saved.environment!r}, not {plan.environment!r}")
        if saved.desired_fingerprint != plan.desired_fingerprint:
            raise PlanRefused("the specs (or the files they use) changed since this plan was made; "
                              "run `reconciler plan` again and review the new plan")
        if saved.state_fingerprint != plan.state_fingerprint:
            raise PlanRefused("the actual state changed since this plan was made (another apply, or a change "
                              "made outside git); run `reconciler plan` again and review the new plan")
        from reconciler.core.plan_json import actions_of

        if saved.actions != actions_of(plan):
            raise PlanRefused("the saved plan's actions differ from what would be applied now; "
                              "run `reconciler plan` again")

    def rotate_credentials(self, registry: str) -> str:
        """New pull credentials for ``registry`` (under the lock); returns the new credential version."""
        registries = self.desired.environment.registries
        if registry not in registries:
            known = ", ".join(sorted(registries)) or "none"
            raise ReconcilerError(f"no registry named {registry!r} in environment.yaml (defined: {known})")
        with self.provider.lock(holder_name()):
            return self.provider.rotate_registry_credentials(registry)

    def devices(self) -> DeviceSimulator:
        """The simulated devices: the local backend has them; real devices are IoT Hub's."""
        if not isinstance(self.provider, Simulated):
            environment = self.desired.environment
            raise ReconcilerError(f"environment {environment.name} uses the {environment.provider!r} provider: "
                                  "simulated devices exist only on the local backend; manage real devices in "
                                  "IoT Hub")
        return self.provider.simulator

    def doctor(self, *, write_probe: bool = False) -> list[Check]:
        """Check what an apply on this environment needs, against the backend itself (``reconciler doctor``).
        Read-only unless ``write_probe`` (see ``Diagnosable``)."""
        provider = self.provider
        if isinstance(provider, Diagnosable):
            return provider.diagnose(write_probe=write_probe)
        environment = self.desired.environment
        return [Check("backend", Check.INFO, f"the {environment.provider!r} provider has nothing to check")]

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Remove the apply lock whose id is ``lock_id`` (only that one); returns who held it."""
        return self.provider.force_unlock(lock_id)

    # --- behaviour --------------------------------------------------------------------

    def _with_behaviour(self, plan: Plan, snapshot: Snapshot, options: BehaviourOptions) -> Plan:
        if not plan.sampled_changes:
            return plan  # nothing to run: the runner (and its HTTP client, subprocess) is not even imported
        from reconciler.behaviour import versions as behaviour_versions
        from reconciler.behaviour.service import Behaviour

        runs = Behaviour(cache_directory(self.desired), self.progress, options.python)
        found = behaviour_versions.report(plan, self.desired, self.fingerprints(), snapshot, self.provider, runs,
                                          skip=options.skip)
        runs.prune()
        return replace(plan, behaviour=found) if found is not None else plan

    def _image_spec(self, name: str) -> ImageSpec:
        promoted = self.desired.promotions.get(name)
        if promoted is not None:
            source = f"{promoted.source_directory.parent.name}/{promoted.source_directory.name}"
            raise ReconcilerError(f"image {name!r} is promoted from environment {promoted.source_environment!r}, "
                                  f"not built here: its samples run there (reconciler test {source} --image "
                                  f"{promoted.source_image})")
        if name not in self.desired.images:
            known = ", ".join(sorted(self.desired.images)) or "none"
            raise ReconcilerError(f"no Image named {name!r} in {self.environment_dir} (defined: {known})")
        return self.desired.images[name]

    def test(self, names: Sequence[str] = (), python: Path | None = None) -> list[ImageBehaviour]:
        """Run the samples of these images (default: every image with samples) on their versions in
        the repository, against their expected outputs and latency gate. Reads no backend."""
        specs = [self._image_spec(name) for name in names] or [
            spec for _, spec in sorted(self.desired.images.items()) if spec.samples is not None]
        if not specs:
            raise ReconcilerError(f"no Image in {self.environment_dir} has samples: add spec.samples.path")
        from reconciler.behaviour import versions as behaviour_versions
        from reconciler.behaviour.service import Behaviour
        from reconciler.core.behaviour import evaluate

        runs = Behaviour(cache_directory(self.desired), self.progress, python)
        results = []
        for spec in specs:
            samples = runs.samples(spec)
            version = behaviour_versions.new_version(self.desired, spec)
            outcome = runs.run(version, self.fingerprints().images[spec.name], samples, label=spec.name,
                               use_cache=False)
            note = outcome.python.note if outcome.python else ""
            results.append(evaluate(spec.name, spec.name, samples, outcome.result, None, spec.gates, note=note))
        runs.prune()
        return results

    def serve(self, name: str, port: int | None = None, python: Path | None = None) -> None:
        """Azure ML's inference server for image ``name`` (as in the repository), in the foreground."""
        from reconciler.behaviour import versions as behaviour_versions
        from reconciler.behaviour.service import Behaviour

        spec = self._image_spec(name)
        Behaviour(cache_directory(self.desired), self.progress, python).serve(
            behaviour_versions.new_version(self.desired, spec), port)

    # --- drift ----------------------------------------------------------------------

    def drift(self) -> drift_core.DriftReport:
        from reconciler.core import drift as drift_core

        snapshot = self.snapshot(health=True)
        plan = self.plan(snapshot=snapshot, count_devices=False, read_uris=False)
        return drift_core.detect(plan, snapshot)

    # --- lineage --------------------------------------------------------------------

    def where(self, kind: str, target: str, *, devices: bool = False) -> Lineage:
        """``reconciler where``: which images package model ``target`` (``NAME[:VERSION]``; ``kind`` "model")
        or which builds of image ``target`` (``NAME[:LABEL]``; "image") there are, the deployments that run
        them, and the devices each reaches. One snapshot, then one device query per deployment: a count, or
        with ``devices`` the ids."""
        from reconciler.core import lineage

        name, version = lineage.parse_target(kind, target)
        snapshot = self.snapshot()
        provider = self.provider
        if isinstance(provider, ImageContents):
            packaged = provider.packaged_versions()
        else:
            packaged = lineage.packaged_by_specs(self.desired, self.fingerprints(), snapshot)
        if kind == "model":
            users = frozenset(i.name for i in self.desired.images.values() if name in i.models)
            found = lineage.trace_model(snapshot, packaged, name, int(version) if version else None, users)
        else:
            found = lineage.trace_image(snapshot, packaged, name, version)
        if devices and not isinstance(provider, DeviceListing):
            raise ReconcilerError(f"the {self.desired.environment.provider!r} provider cannot list devices")
        reached: dict[str, tuple[int, tuple[str, ...] | None]] = {}
        images = []
        for image in found.images:
            reaches = []
            for reach in image.deployments:
                if reach.id not in reached:
                    if isinstance(provider, DeviceListing) and devices:
                        listed = tuple(provider.device_ids(reach.target_condition))
                        reached[reach.id] = (len(listed), listed)
                    else:
                        reached[reach.id] = (provider.count_devices(reach.target_condition), None)
                count, device_ids = reached[reach.id]
                reaches.append(replace(reach, devices=count, device_ids=device_ids))
            images.append(replace(image, deployments=tuple(reaches)))
        return replace(found, images=tuple(images))



def _is_build(change: Change) -> bool:
    return change.key.kind is Kind.IMAGE and change.action in (Action.CREATE, Action.NEW_VERSION)


def _concurrent_groups(changes: Sequence[Change], slots: int) -> Iterator[list[Change]]:
    """The plan's changes in order, one at a time, except consecutive image builds (the planner orders by
    kind, so a plan's builds are consecutive) when the image store runs ``slots`` > 1 at once."""
    group: list[Change] = []
    for change in changes:
        if slots > 1 and _is_build(change):
            group.append(change)
            continue
        if group:
            yield group
            group = []
        yield [change]
    if group:
        yield group


def _apply_group(executor: Executor, group: list[Change], slots: int, applied: list[Change]) -> ProviderError | None:
    """Apply ``group`` (up to ``slots`` at once), appending what succeeded to ``applied``; the first failure,
    after every change of the group has finished (a build already started runs to its end)."""
    if len(group) == 1:
        executor.apply(group[0])
        applied.append(group[0])
        return None
    from concurrent.futures import ThreadPoolExecutor  # imports logging and threading: applies only

    with ThreadPoolExecutor(max_workers=min(slots, len(group)), thread_name_prefix="build") as pool:
        futures = [pool.submit(executor.apply, change) for change in group]
    first: ProviderError | None = None
    for change, future in zip(group, futures, strict=True):
        error = future.exception()
        if error is None:
            applied.append(change)
        elif isinstance(error, ProviderError):
            first = first or error
        else:
            raise error
    return first
