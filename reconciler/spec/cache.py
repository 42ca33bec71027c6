"""What loading an environment reuses from its last run: parsed spec files and schema verdicts.

Parsing 1,400 YAML documents and validating them against the JSON Schemas costs most of a no-op
``plan`` or ``validate``, yet between two runs most spec files do not change. Both results depend on
content alone, so they are kept by digest in ``.reconciler/spec-cache/<environment folder>.json`` below
the repository (``RECONCILER_CACHE_DIR`` moves it, as it moves the fingerprint cache):

* **documents**: per spec file, by the digest of its text, the documents parsed from it (plain data and
  the line and column of every value and key), for files that parsed without a problem;
* **valid**: the digests of (the schemas, a document's content) of the documents that passed their
  schema; jsonschema is then not even imported. A failing document is never recorded, so its
  diagnostics are always computed afresh. A parsed document that passed also carries its content digest
  (``valid`` in its entry), so an unchanged file's documents are known to pass without serialising
  them again to compute it (1,401 ``json.dumps`` and SHA-256 of the benchmark environment); the list
  still serves documents of an edited file whose own content did not change.

Only what this run used is written back, so the file holds one environment's current specs. A cache file
that cannot be read is ignored and one that cannot be written is skipped: it is only a cache. It is JSON,
never pickle: nothing in it is executed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from reconciler.spec.schemas import KINDS, schema_path
from reconciler.spec.yaml_source import Document

FORMAT = 1


def _schemas_digest() -> str:
    sha = hashlib.sha256()
    for kind in KINDS:
        sha.update(schema_path(kind).read_bytes())
    return sha.hexdigest()


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _positions(table: dict[tuple[str | int, ...], tuple[int, int]]) -> list[list[Any]]:
    return [[list(path), line, column] for path, (line, column) in table.items()]


def _table(rows: list[list[Any]]) -> dict[tuple[str | int, ...], tuple[int, int]]:
    return {tuple(path): (line, column) for path, line, column in rows}


class SpecCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._schemas = _schemas_digest()
        self._files: dict[str, list[dict[str, Any]]] = {}
        self._valid: set[str] = set()
        self._used_files: dict[str, list[dict[str, Any]]] = {}
        self._used_valid: set[str] = set()
        # This run's documents (kept alive, so their ids stay theirs) and the cache entries they came from.
        self._entries: dict[int, tuple[Document, dict[str, Any]]] = {}
        self._changed = False
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("format") == FORMAT and data.get("schemas") == self._schemas:
                    self._files = dict(data["files"])
                    self._valid = set(data["valid"])
            except (OSError, ValueError, KeyError, AttributeError, TypeError):
                pass

    @classmethod
    def for_environment(cls, root: Path, directory: Path) -> SpecCache:
        override = os.environ.get("RECONCILER_CACHE_DIR")
        base = Path(override) if override else root / ".reconciler"
        name = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
        return cls(base / "spec-cache" / f"{name}.json")

    # --- parsed files -----------------------------------------------------------------

    def documents(self, file: Path, display: str, text_digest: str) -> list[Document] | None:
        """The documents of a spec file whose text has this digest, if it was parsed before."""
        cached = self._files.get(text_digest)
        if cached is None:
            return None
        self._used_files[text_digest] = cached
        documents = []
        for entry in cached:
            document = Document(file=file, display=display, index=entry["index"], data=entry["data"],
                                locations=_table(entry["locations"]), key_locations=_table(entry["keys"]))
            self._entries[id(document)] = (document, entry)
            documents.append(document)
        return documents

    def remember(self, text_digest: str, documents: list[Document]) -> None:
        """Keep the documents of a file that parsed without a problem."""
        if any(document.problems for document in documents):
            return
        entries = []
        for document in documents:
            entry = {"index": document.index, "data": document.data, "locations": _positions(document.locations),
                     "keys": _positions(document.key_locations)}
            self._entries[id(document)] = (document, entry)
            entries.append(entry)
        self._used_files[text_digest] = entries
        self._changed = True

    # --- schema verdicts --------------------------------------------------------------

    @staticmethod
    def _document_digest(data: Any) -> str:
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def known_valid(self, document: Document) -> bool:
        """Whether the document passed its schema in an earlier run (the schemas unchanged)."""
        _, entry = self._entries.get(id(document), (None, None))
        if entry is not None and isinstance(entry.get("valid"), str):
            self._used_valid.add(entry["valid"])
            return True
        key = self._document_digest(document.data)
        if key in self._valid:
            self._used_valid.add(key)
            if entry is not None:
                entry["valid"] = key
                self._changed = True
            return True
        return False

    def add_valid(self, document: Document) -> None:
        key = self._document_digest(document.data)
        self._used_valid.add(key)
        _, entry = self._entries.get(id(document), (None, None))
        if entry is not None:
            entry["valid"] = key
        self._changed = True

    # --- writing back -------------------------------------------------------------------

    def save(self) -> None:
        unused = set(self._files) != set(self._used_files) or self._valid != self._used_valid
        if self.path is None or not (self._changed or unused):
            return
        data = {"format": FORMAT, "schemas": self._schemas, "files": self._used_files,
                "valid": sorted(self._used_valid)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError:
            pass
