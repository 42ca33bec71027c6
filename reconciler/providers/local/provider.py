"""``LocalProvider``: the Provider protocol on the embedded backend, with Azure's semantics.

State is a SQLite database and files under ``.reconciler/<env>/`` (``store``, ``blobs``,
``images``, ``secrets``). The apply path drives the adapters of ``adapters.py``; IoT Hub's
rules come from ``reconciler.hub``. Beyond the protocol: the simulated devices
(``simulator``), password rotation, and unmanaged deployments for tests and demos.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import PermanentProviderError
from reconciler.hub import limits
from reconciler.hub.manifest import is_layered_content
from reconciler.model import ownership
from reconciler.model.specs import JSON, DesiredState, EnvironmentSpec, UriSource
from reconciler.model.state import PromotionSource, Snapshot
from reconciler.providers.base import Adapters, BuiltImage, Check, HeldLock, LockInfo, Progress
from reconciler.providers.layout import APP, ENVIRONMENT, PackagedModel
from reconciler.providers.local import snapshot
from reconciler.providers.local.store import Store, state_directory

if TYPE_CHECKING:
    # A plan reads the state and counts devices: the blob store, builds, credentials, the lock and the
    # adapters (and their tempfile, random, hmac and base64) are imported by the commands that use them.
    from reconciler.providers.local.blobs import BlobStore
    from reconciler.providers.local.secrets import RegistryCredentials
    from reconciler.providers.local.simulator import Simulator


class LocalProvider:
    """One environment on the local backend (see the module docstring)."""

    def __init__(self, environment: EnvironmentSpec):
        self.environment = environment
        self.directory = state_directory(environment)
        self.store = Store(self.directory)

    @functools.cached_property
    def blobs(self) -> BlobStore:
        from reconciler.providers.local.blobs import BlobStore

        return BlobStore(self.directory / "blobs")

    @functools.cached_property
    def credentials(self) -> RegistryCredentials:
        from reconciler.providers.local.secrets import RegistryCredentials

        return RegistryCredentials(self.directory / "secrets", self.store)

    @functools.cached_property
    def simulator(self) -> Simulator:
        from reconciler.providers.local.simulator import Simulator

        return Simulator(self.store)

    @property
    def name(self) -> str:
        return self.environment.name

    # --- the protocol ---------------------------------------------------------------

    def read_snapshot(self, desired: DesiredState, *, health: bool = False,
                      deployments_only: bool = False) -> Snapshot:
        deployments = self.store.deployments()
        candidates = None if health else {row.id for row in deployments if ownership.ROLLOUT_RING in row.labels
                                          and ownership.owner_of(row.labels) == self.environment.name}
        rollout = None
        if health or candidates:  # drift wants every deployment's health; plans their candidates' only
            from reconciler.providers.local.simulator import Fleet

            rollout = Fleet(deployments).health(self.store.devices(), self.store.image_references(), candidates)
        registries = snapshot.live_registries(desired.environment.registries, self.store.registries())
        models, images = ([], []) if deployments_only else (self.store.models(files=False), self.store.images())
        return snapshot.build(desired.environment.name, models, images, deployments, registries, rollout)

    def count_devices(self, target_condition: str) -> int:
        from reconciler.providers.conditions import checked_condition

        return self.simulator.count(checked_condition(target_condition))

    def count_many(self, target_conditions: Sequence[str]) -> dict[str, int | None]:
        return {condition: self.count_devices(condition) for condition in dict.fromkeys(target_conditions)}

    def device_ids(self, target_condition: str) -> list[str]:
        from reconciler.providers.conditions import checked_condition

        return self.simulator.select(checked_condition(target_condition))

    def model_uri_digest(self, source: UriSource, progress: Progress) -> str:
        """``ModelUris``: see ``adapters.uri_digest``."""
        from reconciler.providers.local.adapters import uri_digest

        return uri_digest(source, self.blobs, progress)

    def promotable_image(self, name: str, label: str) -> PromotionSource:
        """``PromotionSources``: the image row of this label (owned by this environment) and this state folder,
        whose OCI layout the promoting environment copies."""
        row = self.store.image(name, label)
        owned = row is not None and row.owner == self.environment.name
        return PromotionSource(self.environment.name, name, label, row.digest if row and owned else None,
                               f"{snapshot.IMAGE_REGISTRY}/{name}:{label}", str(self.directory))

    def packaged_versions(self) -> dict[tuple[str, str], dict[str, int]]:
        return {(row.name, row.label): dict(row.models) for row in self.store.images()}

    def adapters(self) -> Adapters:
        from reconciler.providers.local.adapters import LocalCredentials, LocalDeployments, LocalImages, LocalModels

        name = self.environment.name
        return Adapters(LocalModels(name, self.store, self.blobs),
                        LocalImages(name, self.directory, self.store, self.blobs),
                        LocalDeployments(name, self.store), LocalCredentials(self.credentials))

    def lock(self, holder: str) -> AbstractContextManager[HeldLock]:
        from reconciler.providers.local import lock

        return lock.hold(self.directory, holder)

    def force_unlock(self, lock_id: str) -> LockInfo:
        from reconciler.providers.local import lock

        return lock.force_unlock(self.directory, lock_id)

    def close(self) -> None:
        self.store.close()

    def diagnose(self, *, write_probe: bool = False) -> list[Check]:
        """``reconciler doctor`` here: the state folder is all there is to check (no credentials, no roles,
        no quotas). Reads only; ``write_probe`` changes nothing on this backend."""
        checks = [Check("backend", Check.INFO, "the local backend needs no credentials, roles or quotas: only its "
                                               "state folder is checked")]
        folder = self.directory
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if folder.is_dir():
            writable = os.access(folder, os.W_OK | os.X_OK)
            checks.append(Check("state folder", Check.OK if writable else Check.FAIL,
                                f"{folder} exists" + ("" if writable else " but is not writable"),
                                "" if writable else f"make {folder} writable for this user"))
        elif existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
            checks.append(Check("state folder", Check.OK, f"{folder} does not exist yet; the first apply creates it"))
        else:
            checks.append(Check("state folder", Check.FAIL, f"{folder} cannot be created",
                                "set RECONCILER_STATE_DIR, or spec.local.stateDir in environment.yaml, to a "
                                "writable folder"))
        from reconciler.providers.local import lock

        held = lock.current(folder)
        if held is not None:
            info, stale = held
            if stale:
                checks.append(Check("apply lock", Check.WARN, f"left by {info.holder} since {info.since}, whose "
                                    "process is gone; the next apply takes it over"))
            else:
                checks.append(Check("apply lock", Check.WARN, f"held by {info.holder} since {info.since}",
                                    f"wait for that run, or `reconciler force-unlock` with lock id {info.lock_id} "
                                    "if it died"))
        return checks

    # --- beyond the protocol: registries, devices, unmanaged deployments --------------

    def built_image_files(self, name: str, label: str, destination: Path) -> BuiltImage | None:
        """``BuiltImageFiles``: the app and conda file from the image's build context
        (``images/<name>/<label>/context``), the model versions it packages, their files from the blobs."""
        import shutil

        from reconciler.providers.local import images as builds

        image = self.store.image(name, label)
        if image is None:
            return None
        directory = builds.image_directory(self.directory, name, label)
        entry = builds.built_entry(directory)
        if entry is None:
            raise PermanentProviderError(f"its build ({directory}) is gone or incomplete",
                                         resource=f"image/{name}:{label}")
        context = directory / "context"
        for folder in (APP, ENVIRONMENT):
            shutil.copytree(context / folder, destination / folder, dirs_exist_ok=True)
        packaged = []
        for model, version in sorted(image.models.items()):
            row = self.store.model(model, version)
            if row is None:
                raise PermanentProviderError(f"the image packages {model}:{version}, which no longer exists",
                                             resource=f"image/{name}:{label}")
            packaged.append(PackagedModel(row.name, row.version, row.files))
        return BuiltImage(entry, tuple(packaged), self.blobs.copy_to)

    def rotate_registry_credentials(self, registry: str) -> str:
        """Replace a registry's password; return its new credential version. The next plan
        replaces every deployment that embeds it."""
        if registry not in self.environment.registries:
            raise PermanentProviderError(f"registry {registry!r} is not declared in environment.yaml")
        try:
            return self.credentials.rotate(registry)
        except OSError as exc:
            raise PermanentProviderError(f"cannot write the new password: {exc.strerror or exc}; check that "
                                         f"{self.credentials.directory} is writable", resource=registry) from exc

    def create_unmanaged_deployment(self, deployment_id: str, content: dict[str, JSON], target_condition: str,
                                    priority: int, layered: bool = False, labels: dict[str, str] | None = None,
                                    metrics: dict[str, str] | None = None) -> None:
        """A deployment without ownership labels, as someone would make in the portal."""
        if layered != is_layered_content(content):
            raise PermanentProviderError("content and layered disagree: a layered deployment's $edgeAgent has "
                                         "only properties.desired.* paths", resource=deployment_id)
        from reconciler.providers.conditions import checked_condition

        checked_condition(target_condition, deployment_id)
        self.store.add_deployment(deployment_id, content, target_condition, priority, labels or {}, metrics or {},
                                  layered, limits.MAX_DEPLOYMENTS_PER_HUB)
