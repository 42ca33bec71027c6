"""The apply path's adapters on the local backend: calls on the SQLite store, the blob store and the
image builder, nothing more (the rules are ``providers.apply``'s)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from reconciler.errors import PermanentProviderError
from reconciler.hub import limits
from reconciler.hub.manifest import redact_passwords
from reconciler.model import ownership
from reconciler.model.plan import DesiredImage, DesiredPromotion
from reconciler.model.specs import JSON, ModelSpec, UriSource
from reconciler.model.state import ImageVersion, LiveDeployment, ModelVersion
from reconciler.providers.base import Progress, PullCredential
from reconciler.providers.layout import PackagedModel, registered_files
from reconciler.providers.local import images
from reconciler.providers.local.blobs import CHUNK, BlobStore
from reconciler.providers.local.rows import ImageRow
from reconciler.providers.local.secrets import RegistryCredentials
from reconciler.providers.local.snapshot import image_version, live_deployment, model_version
from reconciler.providers.local.store import Store, now


def file_path(source: UriSource) -> Path:
    """The file a ``file://`` URI names (``validate`` refused any other URI on this backend)."""
    from urllib.request import url2pathname  # imports http.client and email: only models from a URI need it

    parts = urlsplit(source.uri)
    return Path(url2pathname(parts.path))


def _counter(progress: Progress, total: int) -> Callable[[int], None]:
    done = 0

    def on_bytes(count: int) -> None:
        nonlocal done
        done += count
        progress.advance(done, total)

    return on_bytes


def uri_digest(source: UriSource, blobs: BlobStore, progress: Progress) -> str:
    """``ModelUris.model_uri_digest`` on this backend: the pinned digest when the blob store holds those bytes
    already (they are what a registration would use), else the SHA-256 of the file, read now."""
    if blobs.path(source.sha256).is_file():
        return source.sha256
    path = file_path(source)
    try:
        size = path.stat().st_size
        progress.step(f"reading {source.uri} to check its digest")
        on_bytes = _counter(progress, size)
        sha = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                sha.update(chunk)
                on_bytes(len(chunk))
    except OSError as exc:
        raise PermanentProviderError(f"cannot read {source.uri}: {exc.strerror or exc}; the local backend reads "
                                     "file:// URIs on this machine", resource=source.uri) from exc
    return sha.hexdigest()


class LocalModels:
    """Versions numbered as Azure ML numbers them: the highest version of the name (any owner) + 1."""

    def __init__(self, environment: str, store: Store, blobs: BlobStore) -> None:
        self._environment, self._store, self._blobs = environment, store, blobs

    def version(self, name: str, version: int) -> ModelVersion | None:
        row = self._store.model(name, version)
        return model_version(row) if row else None

    def newest(self, name: str, fingerprint: str) -> ModelVersion | None:
        row = self._store.newest_model_version(name, self._environment, fingerprint)
        return model_version(row) if row else None

    def register(self, spec: ModelSpec, fingerprint: str, tags: dict[str, str], progress: Progress) -> None:
        """Upload the files, then record the version: an interruption before the record leaves only
        unreferenced blobs."""
        if spec.uri is not None:
            digest = self._from_uri(spec, progress)
            self._store.add_model_version(spec.name, fingerprint, spec.description, tags, spec.properties,
                                          {spec.uri.file_name: digest})
            return
        assert spec.path is not None
        files = registered_files(spec.path)
        total = sum(path.stat().st_size for path in files.values())
        progress.step(f"registering model {spec.name}: {len(files)} file(s), {total / 1e6:.1f} MB")
        done = 0

        def on_bytes(count: int) -> None:
            nonlocal done
            done += count
            progress.advance(done, total)

        digests = {relative: self._blobs.put(path, on_bytes) for relative, path in files.items()}
        self._store.add_model_version(spec.name, fingerprint, spec.description, tags, spec.properties, digests)

    def _from_uri(self, spec: ModelSpec, progress: Progress) -> str:
        """The blob of a model from a URI: the store's, when it holds the pinned bytes already (content-addressed),
        else the file copied in; refused, and not kept, when its bytes are not the pinned ones."""
        assert spec.uri is not None
        source = spec.uri
        if self._blobs.path(source.sha256).is_file():
            return source.sha256
        path = file_path(source)
        progress.step(f"registering model {spec.name} from {source.uri}")
        size = path.stat().st_size
        digest = self._blobs.put(path, _counter(progress, size))
        if digest != source.sha256:
            self._blobs.keep_only(self._store.blobs_in_use())
            raise PermanentProviderError(f"the file at {source.uri} has digest sha256:{digest}, not the pinned "
                                         f"{source.digest}: nothing was registered; run `reconciler plan` again",
                                         resource=f"model/{spec.name}")
        return digest

    def update(self, version: ModelVersion, description: str, tags: dict[str, str],
               added_properties: dict[str, str]) -> None:
        self._store.update_model(version.name, version.version, description, tags,
                                 {**version.properties, **added_properties})

    def delete_owned(self, name: str) -> None:
        """Every version of ``name`` this environment owns, then the files no version uses."""
        self._store.delete_models(name, self._environment)
        self._blobs.keep_only(self._store.blobs_in_use())


class LocalImages:
    """A Docker build context and an OCI image layout per label, under ``images/<name>/<label>``."""

    def __init__(self, environment: str, directory: Path, store: Store, blobs: BlobStore) -> None:
        self._environment, self._directory, self._store, self._blobs = environment, directory, store, blobs

    def get(self, name: str, label: str) -> ImageVersion | None:
        row = self._store.image(name, label)
        return image_version(row) if row else None

    def build(self, image: DesiredImage, models: list[ModelVersion], tags: dict[str, str],
              progress: Progress) -> None:
        packaged = []
        for model in models:
            row = self._store.model(model.name, model.version)
            if row is None:
                raise PermanentProviderError("this version no longer exists; run `reconciler plan` again",
                                             resource=f"model/{model.name}:{model.version}")
            packaged.append(PackagedModel(row.name, row.version, row.files))
        name, label = image.spec.name, image.label
        digest = images.build(self._path(name, label), image.spec, image.reference, packaged, self._blobs, progress)
        self._store.add_image(ImageRow(name, label, image.fingerprint, image.reference, self._environment, now(),
                                       {m.name: m.version for m in packaged}, digest, tags))

    def _path(self, name: str, label: str) -> Path:
        return images.image_directory(self._directory, name, label)

    def promote(self, promotion: DesiredPromotion, tags: dict[str, str], progress: Progress) -> None:
        """Copy the source environment's OCI layout (its state folder is ``source.locator``). The image
        packages the source's model versions, which this environment does not hold: it records none."""
        source = promotion.source
        name, label = promotion.spec.name, promotion.label
        what = f"image/{name}:{label}"
        origin = Path(source.locator)
        if origin.resolve() == self._directory.resolve():
            raise PermanentProviderError(f"environment {source.environment!r} keeps its state in this environment's "
                                         f"state folder ({self._directory}); give each its own (spec.local.stateDir, "
                                         "and no RECONCILER_STATE_DIR) to promote between them", resource=what)
        progress.step(f"promoting image {name}:{label} from environment {source.environment} ({source.digest})")
        try:
            images.copy_image(origin / "images" / source.image / label / "oci", self._path(name, label),
                              str(source.digest), promotion.reference, progress)
        except FileNotFoundError as exc:
            raise PermanentProviderError(f"environment {source.environment!r} no longer has {source.reference} "
                                         f"({source.digest}): run `reconciler plan` again", resource=what) from exc
        except ValueError as exc:
            raise PermanentProviderError(str(exc), resource=what) from exc
        self._store.add_image(ImageRow(name, label, promotion.fingerprint, promotion.reference, self._environment,
                                       now(), {}, str(source.digest), tags))

    def delete(self, version: ImageVersion) -> None:
        self._store.delete_image(version.name, version.label)
        shutil.rmtree(self._path(version.name, version.label), ignore_errors=True)


class LocalDeployments:
    """IoT Hub's configurations. Content is stored with the password placeholders: the passwords stay
    in the secrets folder."""

    def __init__(self, environment: str, store: Store) -> None:
        self._environment, self._store = environment, store

    def get(self, deployment_id: str) -> LiveDeployment | None:
        row = self._store.deployment(deployment_id)
        return live_deployment(row) if row else None

    def owned(self) -> list[LiveDeployment]:
        return [live_deployment(row) for row in self._store.deployments()
                if ownership.owner_of(row.labels) == self._environment]

    def create(self, deployment_id: str, content: dict[str, JSON], target_condition: str, priority: int,
               labels: dict[str, str], metrics: dict[str, str], layered: bool) -> None:
        existing = self._store.deployment(deployment_id)
        if existing is not None and existing.labels == labels and existing.content == redact_passwords(content):
            return  # created already (an interrupted apply)
        self._store.add_deployment(deployment_id, redact_passwords(content), target_condition, priority, labels,
                                   metrics, layered, limits.MAX_DEPLOYMENTS_PER_HUB)

    def update(self, deployment_id: str, target_condition: str, priority: int, labels: dict[str, str],
               metrics: dict[str, str]) -> None:
        self._store.update_deployment(deployment_id, target_condition, priority, labels, metrics)

    def delete(self, deployment_id: str) -> None:
        self._store.delete_deployment(deployment_id)


class LocalCredentials:
    """One password per registry, in a 0600 file; rotation replaces it in place, so there is nothing
    to release."""

    def __init__(self, credentials: RegistryCredentials) -> None:
        self._credentials = credentials

    def credential(self, registry: str, username: str, repositories: set[str]) -> PullCredential:
        password = self._credentials.password(registry)
        return PullCredential(password, self._credentials.version(registry))

    def release_unused(self, registry: str, in_use: set[str]) -> None:
        pass
