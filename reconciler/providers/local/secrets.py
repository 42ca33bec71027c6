"""Registry credentials of the local backend: the stand-in for an ACR pull token.

Each registry gets a username (``<registry>-pull``) and a random password, generated the
first time a deployment needs them. The password lives only in
``secrets/registry-<name>.json`` (mode 0600, folder 0700): never in SQLite, never in a
message. The registries table holds the public half and ``credential_version``, a counter
that a rotation bumps; content hashes include it, so a rotation replaces deployments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reconciler.errors import PermanentProviderError
from reconciler.providers.local.store import Store

ADDRESS = "localhost"
FIRST_VERSION = "1"


def username(registry: str) -> str:
    return f"{registry}-pull"


class RegistryCredentials:
    """Passwords in ``<state>/secrets``; versions in the store's registries table."""

    def __init__(self, directory: Path, store: Store):
        self.directory = directory
        self.store = store

    def _file(self, registry: str) -> Path:
        return self.directory / f"registry-{registry}.json"

    def _read(self, registry: str) -> str | None:
        path = self._file(registry)
        try:
            password = json.loads(path.read_text(encoding="utf-8"))["password"]
            if not isinstance(password, str):
                raise TypeError("the password is not a string")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentProviderError(
                f"the password file {path} is damaged; remove it: the next apply makes a new password "
                "and replaces the deployments that use it", resource=f"registry/{registry}") from exc
        return password

    def _write(self, registry: str) -> str:
        """A new random password, written atomically with mode 0600."""
        import secrets  # with tempfile, only here: a plan reads the passwords, never writes one
        import tempfile

        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        password = secrets.token_urlsafe(32)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".registry-")  # mode 0600
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump({"username": username(registry), "password": password}, stream)
        os.replace(temporary, self._file(registry))
        return password

    def password(self, registry: str) -> str:
        """The registry's password, created (version 1) on first use. A password file lost
        while the registry is recorded counts as a rotation: the devices' copies are stale."""
        row = self.store.registries().get(registry)
        password = self._read(registry)
        if password is not None and row is not None:
            return password
        if password is None:
            password = self._write(registry)
            version = str(int(row.credential_version) + 1) if row else FIRST_VERSION
        else:
            version = FIRST_VERSION
        self.store.set_registry(registry, username(registry), version)
        return password

    def version(self, registry: str) -> str:
        """The credential version of the registry's current password."""
        row = self.store.registries().get(registry)
        return row.credential_version if row else FIRST_VERSION

    def rotate(self, registry: str) -> str:
        """Replace the password and bump the version; return the new version."""
        row = self.store.registries().get(registry)
        self._write(registry)
        version = str(int(row.credential_version) + 1) if row else FIRST_VERSION
        self.store.set_registry(registry, username(registry), version)
        return version
