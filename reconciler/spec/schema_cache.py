"""Documents already known to pass their schema, so that a re-run validates only what changed.

Validating 1,400 documents against their JSON Schemas costs most of a no-op ``plan`` or ``validate``.
A document passes or fails its schema by its content alone, so the digest of (the schemas, the
document's kind and content) of every document that passed is kept in
``<repository>/.reconciler/schema-cache.json`` (``RECONCILER_CACHE_DIR`` moves it, as it moves the
fingerprint cache): next time, those documents skip the validator, and jsonschema is not even
imported. A document that failed is never cached, so its diagnostics are always fresh. A cache file
that cannot be read is ignored, and one that cannot be written is skipped: it is only a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from reconciler.spec.schemas import KINDS, schema_path

CACHE_FILE = "schema-cache.json"
MAX_ENTRIES = 100_000  # past this, the cache starts again (old entries of edited specs pile up)


def _schemas_digest() -> str:
    sha = hashlib.sha256()
    for kind in KINDS:
        sha.update(schema_path(kind).read_bytes())
    return sha.hexdigest()


class SchemaCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._schemas = _schemas_digest()
        self._known: set[str] = set()
        self._added = False
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("schemas") == self._schemas:
                    self._known = set(data.get("valid", []))
            except (OSError, ValueError, AttributeError, TypeError):
                pass

    @classmethod
    def for_repository(cls, root: Path) -> SchemaCache:
        override = os.environ.get("RECONCILER_CACHE_DIR")
        return cls((Path(override) if override else root / ".reconciler") / CACHE_FILE)

    @staticmethod
    def digest(data: Any) -> str:
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def known_valid(self, data: Any) -> bool:
        return self.digest(data) in self._known

    def add(self, data: Any) -> None:
        digest = self.digest(data)
        if digest not in self._known:
            self._known.add(digest)
            self._added = True

    def save(self) -> None:
        if self.path is None or not self._added:
            return
        known = self._known if len(self._known) <= MAX_ENTRIES else set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps({"schemas": self._schemas, "valid": sorted(known)}), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError:
            pass
