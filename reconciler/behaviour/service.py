"""What the engine asks of behaviour: run a version's samples (cached), test an image, serve it.

Results are cached in ``<cache dir>/behaviour/<key>.json``, the key a digest of the version's
fingerprint (script, conda file, source directory, model files), the samples (names, bodies,
expected answers), ``repeat`` and the scoring environment: a re-plan, or the apply after a plan,
runs nothing. A run that failed is not cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.behaviour import gc, runner
from reconciler.behaviour.venv import ScoringPython, cache_root, override_note, scoring_python, touch, user_python
from reconciler.core.behaviour import run_from_dict, run_to_dict
from reconciler.errors import BehaviourError
from reconciler.model.behaviour import Sample
from reconciler.model.behaviour_results import RunResult
from reconciler.model.specs import ImageSpec
from reconciler.providers.base import Progress
from reconciler.spec.samples import SampleProblems, read_samples

CACHE_FOLDER = "behaviour"


def samples_digest(samples: Sequence[Sample]) -> str:
    sha = hashlib.sha256()
    for sample in samples:
        sha.update(sample.name.encode() + b"\0" + sample.body + b"\0")
        sha.update(json.dumps(sample.expected, sort_keys=True).encode() if sample.has_expected else b"-")
        sha.update(b"\n")
    return sha.hexdigest()


@dataclass(frozen=True)
class Outcome:
    """One version's run: its result, whether it came from the cache, and the seconds spent
    (environment, server start-up, samples)."""

    result: RunResult
    cached: bool
    environment_seconds: float = 0.0
    startup_seconds: float = 0.0
    python: ScoringPython | None = None


class Behaviour:
    """Runs for one command: scoring environments are looked up once per conda file."""

    def __init__(self, cache_dir: Path, progress: Progress, python: Path | None = None):
        self.cache_dir = cache_dir / CACHE_FOLDER
        self.progress = progress
        self.python_override = python
        self._pythons: dict[Path, ScoringPython] = {}
        self._results_used: set[str] = set()

    def samples(self, spec: ImageSpec) -> list[Sample]:
        if spec.samples is None:
            raise BehaviourError(f"image/{spec.name} has no samples: add spec.samples.path (a folder of "
                                 "<name>.json request bodies, with optional <name>.expected.json answers)")
        try:
            return read_samples(spec.samples.path)
        except SampleProblems as problems:
            raise BehaviourError(f"image/{spec.name}: {problems}; run `reconciler validate`") from None

    def python_for(self, spec: ImageSpec) -> ScoringPython:
        if self.python_override is not None:
            key = self.python_override
            if key not in self._pythons:
                self._pythons[key] = user_python(self.python_override)
            return dataclasses.replace(self._pythons[key], note=override_note(spec.conda_file, self._pythons[key]))
        if spec.conda_file not in self._pythons:
            self._pythons[spec.conda_file] = scoring_python(spec.conda_file, self.progress)
        return self._pythons[spec.conda_file]

    def _key(self, fingerprint: str, samples: Sequence[Sample], spec: ImageSpec, python: ScoringPython) -> str:
        repeat = spec.samples.repeat if spec.samples else 1
        text = f"{fingerprint}\0{samples_digest(samples)}\0{repeat}\0{python.key}\0{python.python}"
        return hashlib.sha256(text.encode()).hexdigest()

    def run(self, version: runner.ImageVersionFiles, fingerprint: str, samples: Sequence[Sample], *,
            label: str, use_cache: bool = True) -> Outcome:
        """The samples on one version: from the cache, else through a scoring server."""
        spec = version.spec
        python = self.python_for(spec)
        key = self._key(fingerprint, samples, spec, python)
        cached = self.cache_dir / f"{key}.json"
        self._results_used.add(key)
        if use_cache and cached.is_file():
            try:
                result = run_from_dict(json.loads(cached.read_text()))
                touch(cached)
                return Outcome(result, cached=True, python=python)
            except (ValueError, KeyError, TypeError):
                cached.unlink(missing_ok=True)  # a damaged entry is run again
        self.progress.step(f"running {len(samples)} sample(s) on {label}")
        repeat = spec.samples.repeat if spec.samples else 1
        result, startup = runner.run_version(version, python.python, samples, repeat)
        if not any(sample.error for sample in result.samples):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.cache_dir, delete=False, suffix=".tmp") as partial:
                partial.write(json.dumps(run_to_dict(result), sort_keys=True))
            os.replace(partial.name, cached)
        return Outcome(result, cached=False, environment_seconds=python.seconds if python.built else 0.0,
                       startup_seconds=startup, python=python)

    def prune(self) -> gc.Pruned:
        """The caches' LRU pruning (``behaviour.gc``), after a command that ran samples: what it used stays."""
        return gc.prune(cache_root(), self.cache_dir,
                        keep_venvs=gc.limit(gc.KEEP_VENVS_VARIABLE, gc.KEEP_VENVS),
                        keep_results=gc.limit(gc.KEEP_RESULTS_VARIABLE, gc.KEEP_RESULTS),
                        venvs_in_use={p.key for p in self._pythons.values()}, results_in_use=self._results_used)

    def serve(self, version: runner.ImageVersionFiles, port: int | None) -> None:
        """The scoring server in the foreground, its log on this terminal, until Ctrl-C."""
        python = self.python_for(version.spec)
        work = Path(tempfile.mkdtemp(prefix="reconciler-serve-"))
        try:
            with runner.server_for(version, python.python, work, port=port, quiet=False) as server:
                self.progress.step(f"serving {version.spec.name} on {server.url} (POST {server.url}/score); "
                                   "Ctrl-C stops it")
                server.wait_ready()
                self.progress.step(f"ready: curl -d @sample.json -H 'Content-Type: application/json' "
                                   f"{server.url}/score")
                while server.running:
                    time.sleep(0.5)
                raise BehaviourError("the scoring server stopped; its log is above")
        finally:
            shutil.rmtree(work, ignore_errors=True)
