"""``LocalProvider``: the Provider protocol on the embedded backend, with Azure's semantics.

* Models: a registration copies the files into ``blobs/`` and records version = highest
  existing version of that name + 1 (any owner, as Azure ML numbers them). In-place updates
  replace description and tags and add or overwrite properties (Azure ML never removes one).
* Images: a build writes a Docker context and an OCI layout (``images.py``) of the newest
  owned model versions with the fingerprints the plan packaged.
* Deployments: IoT Hub's rules. Ids are unique, content is immutable, at most 100 per hub;
  a replace creates the new id before it deletes the old one. Content is stored with the
  registry password placeholders: the passwords are looked up to check they resolve, and
  never written to the database.
* Nothing owned by another environment (or by no one) is ever changed or deleted.

Beyond the protocol it manages simulated devices (``add_device`` ... ``device_view``),
rotates registry passwords, and creates unmanaged deployments for tests and demos.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from reconciler.core import limits
from reconciler.core.manifest import canonical_json, fill_passwords, is_layered_content, password_placeholder
from reconciler.core.target_condition import Condition, ConditionError, parse
from reconciler.errors import PermanentProviderError
from reconciler.model import ownership
from reconciler.model.plan import Action, Change, DesiredDeployment, DesiredImage, DesiredModel
from reconciler.model.specs import JSON, DesiredState, EnvironmentSpec, Kind
from reconciler.model.state import ImageVersion, LiveDeployment, ModelVersion, Snapshot
from reconciler.providers.base import LockInfo, Progress
from reconciler.providers.local import images, lock, snapshot
from reconciler.providers.local.blobs import BlobStore
from reconciler.providers.local.devices import EffectiveModules, Hub, count_matching
from reconciler.providers.local.rows import DeploymentRow, DeviceRow, ImageRow, ModelRow
from reconciler.providers.local.secrets import RegistryCredentials
from reconciler.providers.local.store import Store, now, state_directory
from reconciler.spec.fingerprints import HashCache, tree_digest

T = TypeVar("T")

# IoT Hub device ids: up to 128 ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '
DEVICE_ID = re.compile(r"^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$")
# Twin property names may not contain '.', '$', spaces or control characters.
TAG_KEY = re.compile(r"^[^.$\s\x00-\x1f\x7f-\x9f]{1,1024}$")


@dataclass(frozen=True)
class DeviceView:
    """A device as ``reconciler device show`` prints it."""

    device: DeviceRow
    modules: EffectiveModules


def _expect(value: object, kind: type[T], change: Change) -> T:
    if not isinstance(value, kind):
        raise PermanentProviderError(f"malformed {change.action.value} change: expected a {kind.__name__}",
                                     resource=str(change.key))
    return value


def _model_files(path: Path) -> dict[str, Path]:
    """A model's files by the path Azure ML registers them under: relative to the parent of
    ``path``, so a registered folder keeps its name (``model/model.json``)."""
    if path.is_file():
        return {path.name: path}
    return {p.relative_to(path.parent).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()}


def _reserved(tags: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in tags.items() if key in ownership.RESERVED_KEYS}


def _check_condition(condition: str, resource: str | None = None) -> Condition:
    """Parse a target condition; refuse it as the hub would if it does not parse."""
    try:
        return parse(condition)
    except ConditionError as exc:
        raise PermanentProviderError(f"invalid target condition {condition!r}: {exc}", resource=resource) from exc


class LocalProvider:
    """One environment on the local backend (see the module docstring)."""

    def __init__(self, environment: EnvironmentSpec):
        self.environment = environment
        self.directory = state_directory(environment)
        self.store = Store(self.directory)
        self.blobs = BlobStore(self.directory / "blobs")
        self.credentials = RegistryCredentials(self.directory / "secrets", self.store)
        self._devices: list[DeviceRow] | None = None  # read once per instance for counting

    @property
    def name(self) -> str:
        return self.environment.name

    # --- the protocol ---------------------------------------------------------------

    def read_snapshot(self, desired: DesiredState, *, health: bool = False) -> Snapshot:
        deployments = self.store.deployments()
        rollout = Hub(deployments).health(self.store.devices(), self.store.image_references()) if health else None
        registries = snapshot.live_registries(desired.environment.registries, self.store.registries())
        return snapshot.build(desired.environment.name, self.store.models(), self.store.images(), deployments,
                              registries, rollout)

    def count_devices(self, target_condition: str) -> int:
        condition = _check_condition(target_condition)
        if self._devices is None:
            self._devices = self.store.devices()
        return count_matching(condition, self._devices)

    def apply(self, change: Change, desired: DesiredState, progress: Progress) -> None:
        try:
            if change.key.kind is Kind.MODEL:
                self._apply_model(change, progress)
            elif change.key.kind is Kind.IMAGE:
                self._apply_image(change, progress)
            else:
                self._apply_deployment(change)
        except OSError as exc:  # reading spec files, writing blobs, builds or secrets
            where = f" ({exc.filename})" if exc.filename else ""
            raise PermanentProviderError(
                f"{exc.strerror or exc}{where}; check that the spec's files exist and that {self.directory} is "
                "writable, then apply again", resource=str(change.key)) from exc

    def lock(self, holder: str) -> AbstractContextManager[None]:
        return lock.hold(self.directory, holder)

    def force_unlock(self, lock_id: str) -> LockInfo:
        return lock.force_unlock(self.directory, lock_id)

    def close(self) -> None:
        self.store.close()

    # --- models ---------------------------------------------------------------------

    def _apply_model(self, change: Change, progress: Progress) -> None:
        if change.action is Action.DELETE:
            self._delete_model(_expect(change.actual, ModelVersion, change).name)
        elif change.action is Action.CREATE or change.new_version:
            self._register_model(_expect(change.desired, DesiredModel, change), progress)
        elif change.action is Action.UPDATE:
            self._update_model(_expect(change.desired, DesiredModel, change),
                               _expect(change.actual, ModelVersion, change))
        else:
            raise PermanentProviderError("models cannot be replaced", resource=str(change.key))

    def _register_model(self, model: DesiredModel, progress: Progress) -> None:
        """Upload the files, check they are what the plan fingerprinted, then record the
        version: an interruption before the record leaves only unreferenced blobs."""
        spec = model.spec
        files = _model_files(spec.path)
        total = sum(path.stat().st_size for path in files.values())
        progress.step(f"registering model {spec.name}: {len(files)} file(s), {total / 1e6:.1f} MB")
        done = 0

        def on_bytes(count: int) -> None:
            nonlocal done
            done += count
            progress.advance(done, total)

        digests, cache = {}, HashCache()
        for relative, path in files.items():
            stat = path.stat()
            digests[relative] = digest = self.blobs.put(path, on_bytes)
            cache.entries[str(path)] = (stat.st_size, stat.st_mtime_ns, digest)
        if tree_digest(spec.path, cache) != model.fingerprint:
            raise PermanentProviderError("the model files changed since the plan was made; "
                                         "run `reconciler plan` again", resource=f"model/{spec.name}")
        tags = {**spec.tags, **ownership.ownership_tags(self.name, spec.name, model.fingerprint)}
        self.store.add_model_version(spec.name, model.fingerprint, spec.description, tags, spec.properties, digests)

    def _owned_model(self, version: ModelVersion) -> ModelRow:
        row = self.store.model(version.name, version.version)
        if row is None:
            raise PermanentProviderError("this version no longer exists; run `reconciler plan` again",
                                         resource=f"model/{version.name}:{version.version}")
        if row.owner != self.name:
            raise PermanentProviderError(f"not owned by environment {self.name!r}; it is never changed",
                                         resource=f"model/{version.name}:{version.version}")
        return row

    def _update_model(self, model: DesiredModel, version: ModelVersion) -> None:
        row = self._owned_model(version)
        tags = {**model.spec.tags, **_reserved(row.tags)}
        properties = {**row.properties, **model.spec.properties}  # add-only, as in Azure ML
        self.store.update_model(row.name, row.version, model.spec.description, tags, properties)

    def _delete_model(self, name: str) -> None:
        """Delete every version of ``name`` this environment owns, then their files."""
        self.store.delete_models(name, self.name)
        self.blobs.keep_only(self.store.blobs_in_use())

    # --- images ---------------------------------------------------------------------

    def _apply_image(self, change: Change, progress: Progress) -> None:
        if change.action is Action.DELETE:
            self._delete_image(_expect(change.actual, ImageVersion, change))
        elif change.action is Action.CREATE or change.new_version:
            self._build_image(_expect(change.desired, DesiredImage, change), progress)
        else:
            raise PermanentProviderError("images are immutable: only new versions are built", resource=str(change.key))

    def _packaged_model(self, name: str, fingerprint: str) -> images.PackagedModel:
        row = self.store.newest_model_version(name, self.name, fingerprint)
        if row is None:
            raise PermanentProviderError(
                f"no version of model {name} owned by environment {self.name!r} has the files this image packages "
                f"(fingerprint {fingerprint[:12]}): the model was not registered; run `reconciler plan` and apply "
                "the model first", resource=f"model/{name}")
        return images.PackagedModel(row.name, row.version, row.files)

    def _build_image(self, image: DesiredImage, progress: Progress) -> None:
        name, label = image.spec.name, image.label
        existing = self.store.image(name, label)
        if existing is not None:
            whose = f"environment {existing.owner!r}" if existing.owner else "no environment (unmanaged)"
            raise PermanentProviderError(f"this image exists already, owned by {whose}; images are immutable: "
                                         "rename the Image spec", resource=f"image/{name}:{label}")
        models = [self._packaged_model(model, fingerprint)
                  for model, fingerprint in sorted(image.model_fingerprints.items())]
        digest = images.build(self._image_directory(name, label), image.spec, image.reference, models, self.blobs,
                              progress)
        tags = {**image.spec.tags, **ownership.ownership_tags(self.name, name, image.fingerprint)}
        self.store.add_image(ImageRow(name, label, image.fingerprint, image.reference, self.name, now(),
                                      {m.name: m.version for m in models}, digest, tags))

    def _image_directory(self, name: str, label: str) -> Path:
        return self.directory / "images" / name / label

    def _delete_image(self, version: ImageVersion) -> None:
        row = self.store.image(version.name, version.label)
        if row is None:
            return  # already gone: the plan's intent holds
        if row.owner != self.name:
            raise PermanentProviderError(f"not owned by environment {self.name!r}; it is never deleted",
                                         resource=f"image/{row.name}:{row.label}")
        self.store.delete_image(row.name, row.label)
        shutil.rmtree(self._image_directory(row.name, row.label), ignore_errors=True)

    # --- deployments ----------------------------------------------------------------

    def _apply_deployment(self, change: Change) -> None:
        if change.action is Action.CREATE:
            self._create_deployment(_expect(change.desired, DesiredDeployment, change))
        elif change.action is Action.UPDATE:
            self._update_deployment(_expect(change.desired, DesiredDeployment, change),
                                    _expect(change.actual, LiveDeployment, change))
        elif change.action is Action.REPLACE:
            old = _expect(change.actual, LiveDeployment, change)
            self._owned_deployment(old.id)  # refuse before creating anything
            self._create_deployment(_expect(change.desired, DesiredDeployment, change))
            self._delete_deployment(old.id)
        else:
            self._delete_deployment(_expect(change.actual, LiveDeployment, change).id)

    def _check_passwords(self, deployment: DesiredDeployment) -> None:
        """Every registry the content names has a placeholder that a password fills. The
        filled copy is dropped: the hub keeps the placeholders, the secrets folder the rest."""
        text = canonical_json(deployment.content)
        for registry in deployment.registries:
            if registry not in self.environment.registries:
                raise PermanentProviderError(f"registry {registry!r} is not declared in environment.yaml",
                                             resource=deployment.id)
            if password_placeholder(registry) not in text:
                raise PermanentProviderError(f"the content has no credentials for registry {registry!r}; "
                                             "run `reconciler plan` again", resource=deployment.id)
        passwords = {registry: self.credentials.password(registry) for registry in deployment.registries}
        filled = canonical_json(fill_passwords(deployment.content, passwords))
        if any(password_placeholder(registry) in filled for registry in deployment.registries):
            raise PermanentProviderError("a registry password placeholder did not resolve", resource=deployment.id)

    def _create_deployment(self, deployment: DesiredDeployment) -> None:
        spec = deployment.spec
        _check_condition(deployment.target_condition, deployment.id)
        self._check_passwords(deployment)
        labels = {**spec.labels, **ownership.ownership_tags(self.name, spec.name, deployment.content_hash)}
        self.store.add_deployment(deployment.id, deployment.content, deployment.target_condition, spec.priority,
                                  labels, spec.metrics, is_layered_content(deployment.content),
                                  limits.MAX_DEPLOYMENTS_PER_HUB)

    def _check_owner(self, row: DeploymentRow) -> None:
        owner = ownership.owner_of(row.labels)
        if owner != self.name:
            whose = f"environment {owner!r}" if owner else "no environment (unmanaged)"
            raise PermanentProviderError(f"owned by {whose}, not {self.name!r}; the reconciler never changes it",
                                         resource=row.id)

    def _owned_deployment(self, deployment_id: str) -> DeploymentRow:
        row = self.store.deployment(deployment_id)
        if row is None:
            raise PermanentProviderError("this deployment no longer exists; run `reconciler plan` again",
                                         resource=deployment_id)
        self._check_owner(row)
        return row

    def _update_deployment(self, deployment: DesiredDeployment, live: LiveDeployment) -> None:
        """The mutable fields only: target condition, priority, labels and metrics."""
        row = self._owned_deployment(live.id)
        spec = deployment.spec
        _check_condition(deployment.target_condition, live.id)
        self.store.update_deployment(live.id, deployment.target_condition, spec.priority,
                                     {**spec.labels, **_reserved(row.labels)}, spec.metrics)

    def _delete_deployment(self, deployment_id: str) -> None:
        row = self.store.deployment(deployment_id)
        if row is None:
            return  # already gone: the plan's intent holds
        self._check_owner(row)
        self.store.delete_deployment(deployment_id)

    # --- beyond the protocol: registries, devices, unmanaged deployments --------------

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
                                    priority: int, layered: bool = False) -> None:
        """A deployment without ownership labels, as someone would make in the portal."""
        if layered != is_layered_content(content):
            raise PermanentProviderError("content and layered disagree: a layered deployment's $edgeAgent has "
                                         "only properties.desired.* paths", resource=deployment_id)
        _check_condition(target_condition, deployment_id)
        self.store.add_deployment(deployment_id, content, target_condition, priority, {}, {}, layered,
                                  limits.MAX_DEPLOYMENTS_PER_HUB)

    def add_device(self, device_id: str, tags: dict[str, JSON] | None = None) -> None:
        self.add_devices([(device_id, tags or {})])

    def add_devices(self, devices: Iterable[tuple[str, dict[str, JSON]]]) -> None:
        """Register devices in one transaction (all or none)."""
        rows = [DeviceRow(device_id, dict(tags), {}, False) for device_id, tags in devices]
        for row in rows:
            self._check_device(row)
        self.store.add_devices(rows)
        self._devices = None

    def _check_device(self, row: DeviceRow) -> None:
        if not DEVICE_ID.match(row.id):
            raise PermanentProviderError(f"invalid device id {row.id!r}: up to 128 letters, digits and "
                                         "- . % _ * ? ! ( ) , : = @ $ '")
        for key in row.tags:
            if not TAG_KEY.match(key):
                raise PermanentProviderError(f"invalid tag name {key!r}: no '.', '$' or spaces",
                                             resource=row.id)

    def _device(self, device_id: str) -> DeviceRow:
        row = self.store.device(device_id)
        if row is None:
            raise PermanentProviderError("no such device; `reconciler device ENV_DIR list` shows them",
                                         resource=device_id)
        return row

    def remove_device(self, device_id: str) -> None:
        if not self.store.remove_device(device_id):
            raise PermanentProviderError("no such device; `reconciler device ENV_DIR list` shows them",
                                         resource=device_id)
        self._devices = None

    def tag_device(self, device_id: str, set_tags: dict[str, JSON], unset: Iterable[str] = ()) -> DeviceRow:
        """Set and remove twin tags; return the device as it is now."""
        row = self._device(device_id)
        removed = set(unset)
        tags = {key: value for key, value in row.tags.items() if key not in removed}
        updated = DeviceRow(row.id, {**tags, **set_tags}, row.reported, row.failing)
        self._check_device(updated)
        self.store.update_device(updated)
        self._devices = None
        return updated

    def mark_device_failing(self, device_id: str, failing: bool = True) -> None:
        """Make the device report failure (or success again) for what it applies."""
        row = self._device(device_id)
        self.store.update_device(DeviceRow(row.id, row.tags, row.reported, failing))

    def list_devices(self) -> list[DeviceRow]:
        return self.store.devices()

    def device_view(self, device_id: str) -> DeviceView:
        device = self._device(device_id)
        return DeviceView(device, Hub(self.store.deployments()).effective_modules(device))
