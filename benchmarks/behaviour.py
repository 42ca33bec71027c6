"""Behaviour runs: what the samples of a model cost, on Azure ML's real inference server.

In a temporary copy of the sample repository (iris, its real conda file, but pinned to the Python
running this script: the environment is made on the pinned Python, and fetching an interpreter is
not what is measured), measures:

* the scoring environment: built from the conda file (the virtualenv cache cold: a fresh
  ``RECONCILER_VENV_CACHE``; uv's own download cache is whatever this machine has), then
  looked up (warm);
* a cold server: from starting ``azmlinfsrv`` to its first answer (the median of ``--runs``);
* the cost of one sample request (p50 and p95 over 20 samples x ``repeat`` 5);
* ``reconciler plan`` of a changed model with a behaviour diff of 20 samples, as a whole process:
  with the behaviour cache cold (both versions run) and warm (a re-plan: nothing runs).

Usage: python benchmarks/behaviour.py [--runs N] [--cold-downloads]
Prints a table of figures; records nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.behaviour.runner import ImageVersionFiles, copy_file, percentile, server_for  # noqa: E402
from reconciler.behaviour.venv import scoring_python  # noqa: E402
from reconciler.providers.base import SilentProgress  # noqa: E402
from reconciler.providers.layout import PackagedModel, registered_files  # noqa: E402
from reconciler.spec.loader import load_environment  # noqa: E402

SAMPLES = 20


def copy_repository(repo: Path) -> Path:
    (repo / ".git").mkdir(parents=True)
    shutil.copytree(ROOT / "models", repo / "models", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "environments" / "local", repo / "environments" / "local")
    samples = repo / "models" / "iris-samples"
    shutil.rmtree(samples)
    samples.mkdir()
    rng = random.Random(10)
    for i in range(SAMPLES):
        rows = [[round(rng.uniform(4.3, 7.9), 1), round(rng.uniform(2.0, 4.4), 1), round(rng.uniform(1.0, 6.9), 1),
                 round(rng.uniform(0.1, 2.5), 1)] for _ in range(3)]
        (samples / f"sample-{i:02d}.json").write_text(json.dumps({"data": rows}) + "\n")
    conda = repo / "models" / "iris" / "conda.yaml"
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    conda.write_text(re.sub(r"(?m)^  - python=\d+\.\d+$", f"  - python={running}", conda.read_text()))
    images = repo / "environments" / "local" / "images.yaml"
    images.write_text(images.read_text().replace("maxChangedOutputs: 0 ", 'maxChangedOutputs: "100%"')
                      .replace("maxLatencyP95Ms: 500", "maxLatencyP95Ms: 10000"))
    return repo / "environments" / "local"


def reconciler(repo: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=repo, capture_output=True, text=True,
                          check=False)
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold-downloads", action="store_true",
                        help="give uv an empty download cache too (every package fetched from the index)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="behaviour-bench-") as folder:
        work = Path(folder)
        if args.cold_downloads:
            os.environ["UV_CACHE_DIR"] = str(work / "uv-cache")
        os.environ["RECONCILER_VENV_CACHE"] = str(work / "venvs")
        os.environ["RECONCILER_STATE_DIR"] = str(work / "state")
        env_dir = copy_repository(work / "repo")
        desired = load_environment(env_dir)
        spec = desired.images["iris-scorer"]

        cold = scoring_python(spec.conda_file, SilentProgress())
        warm = scoring_python(spec.conda_file, SilentProgress())
        rows = [("scoring environment: built (venv cache cold)", f"{cold.seconds:.1f} s"),
                ("scoring environment: looked up (warm)", f"{warm.seconds * 1000:.0f} ms")]

        files = {k: str(v) for k, v in registered_files(desired.models["iris-classifier"].path).items()}
        version = ImageVersionFiles(spec, (PackagedModel("iris-classifier", 1, files),), copy_file)
        body = (spec.samples.path / "sample-00.json").read_bytes() if spec.samples else b"{}"
        first_answers = []
        timings: list[float] = []
        for run in range(args.runs):
            started = time.perf_counter()
            with server_for(version, cold.python, work / f"serve-{run}") as server:
                server.wait_ready()
                status, _, _ = server.score(body)
                assert status == 200
                first_answers.append(time.perf_counter() - started)
                if run == 0:
                    for sample in sorted(spec.samples.path.glob("*.json")) if spec.samples else []:
                        for _ in range(5):
                            timings.append(server.score(sample.read_bytes())[2])
        rows.append((f"cold server to first answer (median of {args.runs})",
                     f"{statistics.median(first_answers):.2f} s"))
        p50, p95 = percentile(timings, 0.5) * 1000, percentile(timings, 0.95) * 1000
        rows.append((f"one sample request (p50 / p95 of {len(timings)})", f"{p50:.1f} / {p95:.1f} ms"))

        repo = work / "repo"
        seconds, done = reconciler(repo, "apply", "environments/local", "--auto-approve")
        assert done.returncode == 0, done.stderr
        model = repo / "models" / "iris" / "model" / "model.json"
        data = json.loads(model.read_text())
        data["weights"][1], data["weights"][2] = data["weights"][2], data["weights"][1]
        model.write_text(json.dumps(data))
        cold_plan, done = reconciler(repo, "plan", "environments/local", "--format", "json")
        assert done.returncode == 0, done.stderr
        changed = json.loads(done.stdout)["behaviour"]["images"][0]["changed"]
        warm_plan, done = reconciler(repo, "plan", "environments/local", "--format", "json")
        assert done.returncode == 0 and "running" not in done.stderr, done.stderr
        skip_plan, done = reconciler(repo, "plan", "environments/local", "--skip-behaviour")
        rows.append((f"`reconciler plan`, {SAMPLES} samples x 5 on both versions ({changed} changed): cache cold",
                     f"{cold_plan:.2f} s"))
        rows.append(("the same plan again: behaviour cache warm", f"{warm_plan:.2f} s"))
        rows.append(("the same plan with --skip-behaviour", f"{skip_plan:.2f} s"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
