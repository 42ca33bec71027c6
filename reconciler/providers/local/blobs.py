"""Content-addressed files: ``blobs/sha256/<digest>``, the local stand-in for a
workspace's blob storage. Writing the same content twice stores it once, and a write is
atomic (a temporary file renamed into place), so an interrupted registration leaves no
half-written blob behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

CHUNK = 1024 * 1024


class BlobStore:
    def __init__(self, directory: Path):
        self.directory = directory / "sha256"

    def path(self, digest: str) -> Path:
        return self.directory / digest

    def put(self, source: Path, on_bytes: Callable[[int], None] | None = None) -> str:
        """Copy a file in; return its SHA-256 (hex)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".incoming-", delete=False) as target:
            try:
                with source.open("rb") as stream:
                    while chunk := stream.read(CHUNK):
                        sha.update(chunk)
                        target.write(chunk)
                        if on_bytes:
                            on_bytes(len(chunk))
            except BaseException:
                os.unlink(target.name)
                raise
        digest = sha.hexdigest()
        os.replace(target.name, self.path(digest))
        return digest

    def copy_to(self, digest: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(digest), destination)

    def keep_only(self, digests: set[str]) -> None:
        """Remove every blob not in ``digests`` (after model versions were deleted)."""
        if not self.directory.is_dir():
            return
        for blob in self.directory.iterdir():
            if blob.name not in digests:
                blob.unlink(missing_ok=True)
