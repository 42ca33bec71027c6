"""The local backend's database: SQLite in the environment's state folder.

Reads never create anything: on a machine where nothing was applied yet, every read
returns nothing and the folder stays absent, so a plan writes nothing. Every write is one
transaction (``BEGIN IMMEDIATE``, so two processes never interleave a read-then-write).
SQLite and file-system errors become provider errors here, with what to do about them.

Ownership keys stay in the stored tags and labels, as in Azure; the ``owner``, ``name`` and
``content_hash`` columns are derived from them on write, so owned rows can be selected in SQL.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from reconciler.errors import PermanentProviderError, TransientProviderError
from reconciler.model import ownership
from reconciler.model.specs import JSON, EnvironmentSpec
from reconciler.providers.local.rows import DeploymentRow, DeviceRow, ImageRow, ModelRow, RegistryRow

T = TypeVar("T")

STATE_DIR_VARIABLE = "RECONCILER_STATE_DIR"
DATABASE = "state.db"
SCHEMA_VERSION = 2
# How to bring an older database up to SCHEMA_VERSION, one step per version.
_MIGRATIONS = {
    1: "ALTER TABLE devices ADD COLUMN modules TEXT NOT NULL DEFAULT '{}';",  # 2: module status reports
}
BUSY_TIMEOUT_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version INTEGER NOT NULL, fingerprint TEXT, description TEXT NOT NULL,
    tags TEXT NOT NULL, properties TEXT NOT NULL, owner TEXT, files TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS images (
    name TEXT NOT NULL, label TEXT NOT NULL, fingerprint TEXT, reference TEXT NOT NULL, owner TEXT,
    created TEXT NOT NULL, models TEXT NOT NULL, digest TEXT NOT NULL, tags TEXT NOT NULL,
    PRIMARY KEY (name, label));
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT, content_hash TEXT, content TEXT NOT NULL,
    target_condition TEXT NOT NULL, priority INTEGER NOT NULL, labels TEXT NOT NULL, metrics TEXT NOT NULL,
    layered INTEGER NOT NULL, created TEXT NOT NULL, seq INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS registries (
    name TEXT PRIMARY KEY, username TEXT NOT NULL, credential_version TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, tags TEXT NOT NULL, reported TEXT NOT NULL, failing INTEGER NOT NULL DEFAULT 0,
    modules TEXT NOT NULL DEFAULT '{}');
"""

_MODEL = "name, version, fingerprint, description, tags, properties, owner, files, created"
# The same, with the files only of versions without a recorded fingerprint (``Store.models(files=False)``).
_MODEL_LISTED = ("name, version, fingerprint, description, tags, properties, owner, "
                 "CASE WHEN COALESCE(fingerprint, '') = '' THEN files ELSE '{}' END, created")
_IMAGE = "name, label, fingerprint, reference, owner, created, models, digest, tags"
_DEPLOYMENT = ("id, name, owner, content_hash, content, target_condition, priority, labels, metrics, layered, "
               "created, seq")


def state_directory(environment: EnvironmentSpec) -> Path:
    """``$RECONCILER_STATE_DIR``, else ``<repository>/<spec.local.stateDir>``, else
    ``<repository>/.reconciler/<environment>``."""
    override = os.environ.get(STATE_DIR_VARIABLE)
    if override:
        return Path(override)
    relative = environment.settings.get("stateDir") or f".reconciler/{environment.name}"
    return environment.repository_root / str(relative)


def now() -> str:
    """Creation times: ISO 8601 UTC, to the microsecond (IoT Hub breaks ties with them)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _dump(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _first(row: Sequence[Any]) -> str:
    return str(row[0])


def _model(row: Sequence[Any]) -> ModelRow:
    name, version, fingerprint, description, tags, properties, owner, files, created = row
    return ModelRow(name, version, fingerprint, description, json.loads(tags), json.loads(properties), owner,
                    json.loads(files), created)


def _image(row: Sequence[Any]) -> ImageRow:
    name, label, fingerprint, reference, owner, created, models, digest, tags = row
    return ImageRow(name, label, fingerprint, reference, owner, created, json.loads(models), digest, json.loads(tags))


def _deployment(row: Sequence[Any]) -> DeploymentRow:
    id_, name, owner, content_hash, content, condition, priority, labels, metrics, layered, created, seq = row
    return DeploymentRow(id_, name, owner, content_hash, json.loads(content), condition, priority,
                         json.loads(labels), json.loads(metrics), bool(layered), created, seq)


_DEVICE = "id, tags, reported, failing, modules"


def _device(row: Sequence[Any]) -> DeviceRow:
    id_, tags, reported, failing, modules = row
    return DeviceRow(id_, json.loads(tags), json.loads(reported), bool(failing), json.loads(modules))


def _first_duplicate(db: sqlite3.Connection, devices: Sequence[DeviceRow]) -> str | None:
    """Which device id of a failed batch insert was taken: repeated in the batch, or
    already in the hub (called after the batch was rolled back)."""
    seen: set[str] = set()
    for device in devices:
        if device.id in seen:
            return device.id
        seen.add(device.id)
    for device in devices:
        if db.execute("SELECT 1 FROM devices WHERE id = ?", (device.id,)).fetchone():
            return device.id
    return None


class Store:
    """One state folder's database. Opened on first use; ``close`` is idempotent."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / DATABASE
        self._connection: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- plumbing -------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise TransientProviderError(
                    f"the local state {self.path} is busy (another reconciler process is writing it); "
                    "try again in a moment", retry_after=1.0) from exc
            raise self._damaged(exc) from exc
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a JSON column that does not parse
            raise self._damaged(exc) from exc
        except OSError as exc:
            raise PermanentProviderError(f"cannot use the state folder {self.directory}: {exc.strerror or exc}; "
                                         "check that it is writable") from exc

    def _damaged(self, exc: Exception) -> PermanentProviderError:
        return PermanentProviderError(
            f"the local state {self.path} cannot be used ({exc}); if it is damaged, move the folder "
            f"{self.directory} away to start from an empty backend")

    def _open(self, *, create: bool) -> sqlite3.Connection | None:
        if self._connection is not None:
            return self._connection
        if not create and not self.path.is_file():
            return None
        with self._errors():
            if create:
                self.directory.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            try:
                self._check_schema(connection)
            except BaseException:
                connection.close()
                raise
        self._connection = connection
        return connection

    def _check_schema(self, connection: sqlite3.Connection) -> None:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            # IF NOT EXISTS everywhere: another process may be creating the same database.
            connection.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}INSERT INTO schema_version SELECT {SCHEMA_VERSION} "
                "WHERE NOT EXISTS (SELECT 1 FROM schema_version); COMMIT;")
        (version,) = connection.execute("SELECT version FROM schema_version").fetchone()
        if version in _MIGRATIONS:
            connection.executescript(f"BEGIN IMMEDIATE;{_MIGRATIONS[version]}"
                                     f"UPDATE schema_version SET version = {version + 1}; COMMIT;")
            self._check_schema(connection)
            return
        if version != SCHEMA_VERSION:
            raise PermanentProviderError(
                f"the local state {self.path} has schema version {version}, this edge-reconciler reads "
                f"version {SCHEMA_VERSION}; use the matching edge-reconciler, or move {self.directory} away")

    def _select(self, sql: str, parameters: Sequence[Any], row: Callable[[Sequence[Any]], T]) -> list[T]:
        """Rows mapped by ``row`` (inside the error guard: a damaged JSON column is reported
        like a damaged database)."""
        connection = self._open(create=False)
        if connection is None:
            return []
        with self._errors():
            return [row(r) for r in connection.execute(sql, parameters)]

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._open(create=True)
        assert connection is not None
        with self._errors():
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # --- reads ----------------------------------------------------------------------

    def models(self, *, files: bool = True) -> list[ModelRow]:
        """Every registered version. ``files=False`` leaves out the file lists of versions whose fingerprint is
        recorded (``files`` empty): a snapshot needs the files only to fingerprint the others, and decoding every
        list was half of the listing's time."""
        return self._select(f"SELECT {_MODEL if files else _MODEL_LISTED} FROM models ORDER BY name, version", (),
                            _model)

    def model(self, name: str, version: int) -> ModelRow | None:
        rows = self._select(f"SELECT {_MODEL} FROM models WHERE name = ? AND version = ?", (name, version), _model)
        return rows[0] if rows else None

    def newest_model_version(self, name: str, owner: str, fingerprint: str) -> ModelRow | None:
        """The newest version of ``name`` that ``owner`` registered with this content."""
        rows = self._select(f"SELECT {_MODEL} FROM models WHERE name = ? AND owner = ? AND fingerprint = ? "
                            "ORDER BY version DESC LIMIT 1", (name, owner, fingerprint), _model)
        return rows[0] if rows else None

    def images(self) -> list[ImageRow]:
        return self._select(f"SELECT {_IMAGE} FROM images ORDER BY name, label", (), _image)

    def image(self, name: str, label: str) -> ImageRow | None:
        rows = self._select(f"SELECT {_IMAGE} FROM images WHERE name = ? AND label = ?", (name, label), _image)
        return rows[0] if rows else None

    def image_references(self) -> set[str]:
        return set(self._select("SELECT reference FROM images", (), _first))

    def deployments(self) -> list[DeploymentRow]:
        return self._select(f"SELECT {_DEPLOYMENT} FROM deployments ORDER BY id", (), _deployment)

    def deployment(self, deployment_id: str) -> DeploymentRow | None:
        rows = self._select(f"SELECT {_DEPLOYMENT} FROM deployments WHERE id = ?", (deployment_id,), _deployment)
        return rows[0] if rows else None

    def registries(self) -> dict[str, RegistryRow]:
        rows = self._select("SELECT name, username, credential_version, created FROM registries", (),
                            lambda r: RegistryRow(*r))
        return {row.name: row for row in rows}

    def devices(self) -> list[DeviceRow]:
        return self._select(f"SELECT {_DEVICE} FROM devices ORDER BY id", (), _device)

    def device_groups(self) -> list[tuple[dict[str, Any], dict[str, Any], int]]:
        """(tags, reported properties, number of devices) per distinct pair: what a target condition without
        ``deviceId`` reads. Grouped by SQLite on the stored text (written canonical by ``_dump``, so equal
        values are equal text; text that is not canonical only makes more groups), so a fleet of 50,000
        devices with 100 distinct tag sets parses 100 pairs, not 100,000 JSON documents."""
        return self._select("SELECT tags, reported, COUNT(*) FROM devices GROUP BY tags, reported ORDER BY 1, 2",
                            (), lambda r: (json.loads(r[0]), json.loads(r[1]), int(r[2])))

    def device(self, device_id: str) -> DeviceRow | None:
        rows = self._select(f"SELECT {_DEVICE} FROM devices WHERE id = ?", (device_id,), _device)
        return rows[0] if rows else None

    def blobs_in_use(self) -> set[str]:
        """Digests of every file of every registered model version (any owner)."""
        files = self._select("SELECT files FROM models", (), lambda r: json.loads(r[0]))
        return {digest for mapping in files for digest in mapping.values()}

    # --- models ---------------------------------------------------------------------

    def add_model_version(self, name: str, fingerprint: str, description: str, tags: dict[str, str],
                          properties: dict[str, str], files: dict[str, str]) -> int:
        """Register the next version of ``name``: one more than the highest, whoever owns it
        (Azure ML numbers versions per workspace, not per owner)."""
        with self._transaction() as db:
            (latest,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM models WHERE name = ?", (name,)).fetchone()
            db.execute(f"INSERT INTO models ({_MODEL}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (name, latest + 1, fingerprint, description, _dump(tags), _dump(properties),
                        ownership.owner_of(tags), _dump(files), now()))
        return int(latest + 1)

    def update_model(self, name: str, version: int, description: str, tags: dict[str, str],
                     properties: dict[str, str]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE models SET description = ?, tags = ?, properties = ?, owner = ? "
                       "WHERE name = ? AND version = ?",
                       (description, _dump(tags), _dump(properties), ownership.owner_of(tags), name, version))

    def delete_models(self, name: str, owner: str) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM models WHERE name = ? AND owner = ?", (name, owner)).rowcount

    # --- images ---------------------------------------------------------------------

    def add_image(self, image: ImageRow) -> None:
        with self._transaction() as db:
            db.execute(f"INSERT INTO images ({_IMAGE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (image.name, image.label, image.fingerprint, image.reference, image.owner, image.created,
                        _dump(image.models), image.digest, _dump(image.tags)))

    def delete_image(self, name: str, label: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM images WHERE name = ? AND label = ?", (name, label))

    # --- deployments ----------------------------------------------------------------

    def add_deployment(self, deployment_id: str, content: dict[str, JSON], target_condition: str, priority: int,
                       labels: dict[str, str], metrics: dict[str, str], layered: bool, limit: int) -> None:
        """Create a configuration, as IoT Hub does: ids are unique and a hub holds at most
        ``limit`` of them."""
        owner = ownership.owner_of(labels)
        name = labels.get(ownership.NAME, deployment_id) if owner else deployment_id
        content_hash = labels.get(ownership.FINGERPRINT) if owner else None
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM deployments WHERE id = ?", (deployment_id,)).fetchone():
                raise PermanentProviderError("a deployment with this id already exists in the hub; ids cannot be "
                                             "reused: run `reconciler plan` again", resource=deployment_id)
            (count, seq) = db.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM deployments").fetchone()
            if count >= limit:
                raise PermanentProviderError(
                    f"the hub already holds {count} deployments, IoT Hub's limit (layered ones included); "
                    "delete unused deployments first (a replace needs room for one more while both exist)",
                    resource=deployment_id)
            db.execute(f"INSERT INTO deployments ({_DEPLOYMENT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (deployment_id, name, owner, content_hash, _dump(content), target_condition, priority,
                        _dump(labels), _dump(metrics), int(layered), now(), seq + 1))

    def update_deployment(self, deployment_id: str, target_condition: str, priority: int, labels: dict[str, str],
                          metrics: dict[str, str]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE deployments SET target_condition = ?, priority = ?, labels = ?, metrics = ? "
                       "WHERE id = ?", (target_condition, priority, _dump(labels), _dump(metrics), deployment_id))

    def delete_deployment(self, deployment_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM deployments WHERE id = ?", (deployment_id,))

    # --- registries -----------------------------------------------------------------

    def set_registry(self, name: str, username: str, credential_version: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO registries (name, username, credential_version, created) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET username = excluded.username, "
                       "credential_version = excluded.credential_version",
                       (name, username, credential_version, now()))

    # --- devices --------------------------------------------------------------------

    def add_devices(self, devices: Sequence[DeviceRow]) -> None:
        """Add devices in one transaction; none is added if one of them exists already."""
        with self._transaction() as db:
            db.execute("SAVEPOINT batch")
            try:
                db.executemany(f"INSERT INTO devices ({_DEVICE}) VALUES (?, ?, ?, ?, ?)",
                               ((d.id, _dump(d.tags), _dump(d.reported), int(d.failing), _dump(d.modules))
                                for d in devices))
            except sqlite3.IntegrityError as exc:
                db.execute("ROLLBACK TO batch")
                raise PermanentProviderError("this device exists already (device ids are unique in a hub); "
                                             "remove it first or pick another id",
                                             resource=_first_duplicate(db, devices)) from exc

    def update_device(self, device: DeviceRow) -> None:
        with self._transaction() as db:
            db.execute("UPDATE devices SET tags = ?, reported = ?, failing = ?, modules = ? WHERE id = ?",
                       (_dump(device.tags), _dump(device.reported), int(device.failing), _dump(device.modules),
                        device.id))

    def remove_device(self, device_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM devices WHERE id = ?", (device_id,)).rowcount > 0
