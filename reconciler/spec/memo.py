"""Fingerprints of an unchanged environment, kept with the file signatures they were computed from.

A no-op plan of the benchmark environment fingerprinted 1,000 model folders every run: each listed, its
2,000 files stat-ed against the digest cache (``fingerprints.HashCache``), every digest line hashed again and
300 image inputs serialised, to find the same fingerprints as the run before. This keeps the fingerprints of
the last run (``.reconciler/<env>/fingerprint-memo.json``, beside the digest cache) and reuses a model's or an
image's when all of these hold:

* the load came from the same verdict (``spec.verdicts``: the token it was kept with). That verdict proves
  the ``DesiredState`` is the one the fingerprints were computed from (paths, URIs, runtimes, the models of
  each image), the working directory is the same, and every folder and link below the model and source
  folders has its signature, so the folders list the same entries;
* every file the fingerprint read (a model's files; an image's entry script, conda file and source files)
  has the same signature: kind, inode, device, size, and mtime and ctime in nanoseconds (stronger than the
  digest cache's size and mtime: a rewrite that restores the mtime still changes the ctime);
* for an image, its models' fingerprints are the ones it was computed with.

Anything else is fingerprinted as before (through the digest cache, reading only changed files), and the memo
is rewritten. An entry read within ``RACY_SECONDS`` of a change to one of its files is not kept: a second
change within the file system's clock tick could keep the signature (as in ``spec.verdicts``). Environments
whose models come from registered versions (fingerprints from the backend) or that promote images are not
memoized: they have no verdict, or inputs outside it. The file is plain JSON in the tool's cache folder,
trusted as the digest cache is; a damaged one is ignored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from reconciler.model.specs import DesiredState, Fingerprints, ImageSpec
from reconciler.spec.fingerprints import HashCache, bytes_to_hash, image_fingerprint, model_fingerprint
from reconciler.spec.verdicts import Signature, signature, stat_signature

MEMO_FILE = "fingerprint-memo.json"
FORMAT = 1
RACY_SECONDS = 1.0

Files = list[tuple[str, Signature]]
Models = dict[str, tuple[str, list[str]]]  # name -> (fingerprint, the files it read)
Images = dict[str, tuple[str, dict[str, str], list[str]]]  # name -> (fingerprint, its models' fingerprints, files)


def _read(path: Path, verdict: str) -> tuple[Models, Images, dict[str, Signature]]:
    """The memo's models, images and file signatures, if it was made from this verdict in this working
    directory; else nothing."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw["format"] != FORMAT or raw["verdict"] != verdict or raw["cwd"] != os.getcwd():
            return {}, {}, {}
        # Files are listed once and named by their place in the list (the 300 images share their scripts).
        table: list[tuple[str, Signature]] = [(str(file), tuple(known)) for file, known in raw["files"]]
        files = dict(table)
        models = {str(name): (str(fingerprint), [table[i][0] for i in read])
                  for name, (fingerprint, read) in raw["models"].items()}
        images = {str(name): (str(fingerprint), {str(m): str(f) for m, f in inputs.items()},
                               [table[i][0] for i in read])
                  for name, (fingerprint, inputs, read) in raw["images"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, {}, {}  # a damaged memo only costs fingerprinting afresh
    return models, images, files


def fingerprints(
    desired: DesiredState, memo_path: Path, verdict: str, load_cache: Callable[[], HashCache],
    announce: Callable[[int], None], on_bytes: Callable[[int], None] | None = None,
) -> tuple[Fingerprints, HashCache | None]:
    """``compute_fingerprints`` of a load that came from (or was kept as) ``verdict``, reusing the memo's.
    Returns the digest cache when something had to be fingerprinted (None when all came from the memo);
    ``announce`` is told how many bytes that will read before any is."""
    started = time.time()
    known_models, known_images, known_files = _read(memo_path, verdict)
    # Each file once (the benchmark's 300 images share one entry script and one conda file).
    same = {file for file, known in known_files.items() if signature(file) == known}
    signatures = {file: known_files[file] for file in same}
    models: dict[str, str] = {}
    kept_models: Models = {}
    stale = []
    for name in sorted(desired.models):
        known = known_models.get(name)
        if known is not None and same.issuperset(known[1]):
            models[name] = known[0]
            kept_models[name] = known
        else:
            stale.append(name)
    cache: HashCache | None = None
    if stale:
        cache = load_cache()
        announce(bytes_to_hash(desired, cache, stale))
        for name in stale:
            spec = desired.models[name]
            fingerprint = model_fingerprint(spec, cache, on_bytes)
            if fingerprint is None:  # the caller does not memoize registered versions
                raise ValueError(f"model {name}: the fingerprint of registered version {spec.registered} is needed")
            models[name] = fingerprint
            read = [file for _, file in cache.files(spec.path)] if spec.path is not None else []
            signatures.update((file, stat_signature(cache.stat(file))) for file in read)
            kept_models[name] = (fingerprint, read)
    images: dict[str, str] = {}
    kept_images: Images = {}
    for name, image in desired.images.items():
        inputs = {model: models[model] for model in sorted(image.models)}
        entry = known_images.get(name)
        if entry is None or entry[1] != inputs or not same.issuperset(entry[2]):
            if cache is None:
                cache = load_cache()
            read = _image_files(image, cache)
            signatures.update((file, stat_signature(cache.stat(file))) for file in read)
            entry = (image_fingerprint(image, models, cache), inputs, read)
        images[name] = entry[0]
        kept_images[name] = entry
    if cache is not None:
        _write(memo_path, verdict, started, kept_models, kept_images, signatures,
               (known_models, known_images, known_files))
    return Fingerprints(models=models, images=dict(sorted(images.items()))), cache


def _image_files(image: ImageSpec, cache: HashCache) -> list[str]:
    files = [str(image.entry_script), str(image.conda_file)]
    if image.source_directory is not None:
        files.extend(file for _, file in cache.files(image.source_directory))
    return files


def _write(path: Path, verdict: str, started: float, models: Models, images: Images,
           signatures: dict[str, Signature], known: tuple[Models, Images, dict[str, Signature]]) -> None:
    """Keep the entries whose files had not changed within ``RACY_SECONDS`` of this run, unless the memo holds
    them all already (only a cache: a file that cannot be written is skipped)."""
    settled = {file for file, known in signatures.items()
               if known is not None and max(known[4], known[5]) / 1e9 < started - RACY_SECONDS}
    models = {name: entry for name, entry in models.items() if settled.issuperset(entry[1])}
    # An image's entry holds its models' fingerprints: kept with theirs only.
    images = {name: entry for name, entry in images.items()
              if settled.issuperset(entry[2]) and all(model in models for model in entry[1])}
    read = {file for entry in (*models.values(), *images.values()) for file in entry[-1]}
    files = {file: signatures[file] for file in sorted(read)}
    # Entries of the memo left out here (changed since, or racy now) cannot match again (a file's ctime never
    # goes back): the memo is rewritten only for an entry it does not hold yet.
    known_models, known_images, known_files = known
    if (all(known_models.get(name) == entry for name, entry in models.items())
            and all(known_images.get(name) == entry for name, entry in images.items())
            and all(known_files.get(file) == known_signature for file, known_signature in files.items())):
        return
    place = {file: i for i, file in enumerate(files)}
    memo = {"format": FORMAT, "verdict": verdict, "cwd": os.getcwd(), "files": list(files.items()),
            "models": {name: [fingerprint, [place[file] for file in read]]
                       for name, (fingerprint, read) in models.items()},
            "images": {name: [fingerprint, inputs, [place[file] for file in read]]
                       for name, (fingerprint, inputs, read) in images.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(memo), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass
