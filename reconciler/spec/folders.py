"""What is below a model folder, listed once per run for the checks and the fingerprints.

A benchmark environment names 1,000 model folders: checking them (empty? a link leading out of the
repository?) and fingerprinting them (every file, sorted) each walked every folder, and built a ``Path``
and made an ``lstat`` or ``stat`` per entry. One ``os.scandir`` walk gives both what they need: the
entry's kind comes from the directory listing itself, so only links cost a system call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Entry:
    relative: str  # posix path below the folder
    path: str  # the folder's path joined with the entry's (not resolved: as ``Path.rglob`` gives it)
    is_link: bool
    is_file: bool  # a file, or a link to one (as ``Path.is_file``)


@dataclass
class Folders:
    """Listings of this run, by folder. A value for one run: files changed later are not seen. With
    ``remember=False`` each call walks afresh and keeps nothing (``validate``: no one lists a folder twice)."""

    listings: dict[str, list[Entry]] = field(default_factory=dict)
    remember: bool = True

    def entries(self, folder: Path | str) -> list[Entry]:
        """Every entry below ``folder``, in ``Path.rglob("*")`` order (each folder's entries in directory
        order, then its subfolders' in turn); links to folders are listed, not followed."""
        key = os.fspath(folder)
        listing = self.listings.get(key)
        if listing is None:
            listing = []
            _walk(key, "", listing)
            if self.remember:
                self.listings[key] = listing
        return listing


def _walk(directory: str, prefix: str, listing: list[Entry]) -> None:
    try:
        with os.scandir(directory) as scan:
            found = list(scan)
    except OSError:  # as os.walk: a folder that cannot be listed has no entries
        return
    folders = []
    for entry in found:
        relative = f"{prefix}{entry.name}"
        is_link = entry.is_symlink()
        try:
            is_file = entry.is_file()
        except OSError:
            is_file = False
        listing.append(Entry(relative, entry.path, is_link, is_file))
        if not is_link and entry.is_dir(follow_symlinks=False):
            folders.append((entry.path, f"{relative}/"))
    for path, below in folders:
        _walk(path, below, listing)
