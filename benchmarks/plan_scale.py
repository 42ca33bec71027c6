"""Plan at scale on the local backend: time and peak memory of a no-op plan and a 1% change.

Generates, in a temporary repository: 1,000 models, 300 images (3 models each), 100
deployments (IoT Hub's limit per hub; 3 modules each) and 50,000 devices; applies it once;
then measures, each in a fresh process (so peak RSS is the plan's own):

* a no-op plan (target: under 5 s and 500 MB on one core; must read no model file);
* a plan after 1% of the model files changed (10 models).

Usage: python benchmarks/plan_scale.py [--models N] [--images N] [--deployments N] [--devices N]
Prints a table of figures; records nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCORE = "def init():\n    pass\n\n\ndef run(input_data):\n    return input_data\n"
CONDA = "name: scorer\ndependencies:\n  - python=3.10\n"


def generate(repo: Path, models: int, images: int, deployments: int) -> Path:
    (repo / ".git").mkdir(parents=True)
    env = repo / "environments" / "scale"
    (env / "specs").mkdir(parents=True)
    (repo / "code").mkdir()
    (repo / "code" / "score.py").write_text(SCORE)
    (repo / "code" / "conda.yaml").write_text(CONDA)
    (env / "environment.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: scale}\n"
        "spec:\n  provider: local\n  registries:\n    local: {}\n")
    model_docs = []
    for i in range(models):
        folder = repo / "models" / f"m{i:04d}"
        folder.mkdir(parents=True)
        (folder / "weights.bin").write_bytes(os.urandom(16 * 1024))
        (folder / "meta.json").write_text(json.dumps({"model": i}))
        model_docs.append(f"apiVersion: reconciler/v1\nkind: Model\nmetadata:\n  name: m{i:04d}\n"
                          f"  tags: {{team: t{i % 7}}}\nspec:\n  path: ../../../models/m{i:04d}\n")
    (env / "specs" / "models.yaml").write_text("---\n".join(model_docs))
    image_docs = []
    for i in range(images):
        names = ", ".join(f"m{(i * 3 + k) % models:04d}" for k in range(3))
        image_docs.append(f"apiVersion: reconciler/v1\nkind: Image\nmetadata: {{name: img{i:03d}}}\n"
                          f"spec:\n  entryScript: ../../../code/score.py\n  condaFile: ../../../code/conda.yaml\n"
                          f"  models: [{names}]\n")
    (env / "specs" / "images.yaml").write_text("---\n".join(image_docs))
    deployment_docs = []
    for i in range(deployments):
        modules = "".join(f"    mod{k}:\n      image: img{(i * 3 + k) % images:03d}\n      env: {{SLOT: '{k}'}}\n"
                          for k in range(3))
        deployment_docs.append(
            f"apiVersion: reconciler/v1\nkind: Deployment\nmetadata: {{name: dep{i:03d}}}\n"
            f"spec:\n  targetCondition: tags.site='s{i:03d}'\n  priority: {10 + i % 5}\n  registry: local\n"
            f"  modules:\n{modules}")
    (env / "specs" / "deployments.yaml").write_text("---\n".join(deployment_docs))
    return env


def add_devices(env: Path, count: int, deployments: int) -> float:
    sys.path.insert(0, str(ROOT))
    from reconciler.providers.local.provider import LocalProvider
    from reconciler.spec.loader import load_environment

    started = time.perf_counter()
    provider = LocalProvider(load_environment(env).environment)
    provider.simulator.add([(f"dev{i:05d}", {"site": f"s{i % deployments:03d}", "environment": "scale"})
                          for i in range(count)])
    provider.close()
    return time.perf_counter() - started


PROBE = """
import resource, sys, time
from reconciler.engine import Engine
started = time.perf_counter()
with Engine(sys.argv[1]) as engine:
    plan = engine.plan()
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{elapsed:.3f} {peak:.1f} {len(plan.changes)} {engine.bytes_hashed}")
"""


def measure_plan(env: Path, environ: dict[str, str]) -> tuple[float, float, int, int]:
    """Plan in a fresh process pinned to one core; returns seconds, peak MB, changes, bytes hashed."""
    command = [sys.executable, "-c", PROBE, str(env)]
    if hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", "0", *command]
    out = subprocess.run(command, env=environ, capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]), int(out[3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--devices", type=int, default=50_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        env = generate(repo, args.models, args.images, args.deployments)
        environ = {**os.environ, "RECONCILER_STATE_DIR": str(Path(tmp) / "state"), "CI": "1",
                   "PYTHONPATH": str(ROOT)}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "reconciler", "apply", str(env), "--auto-approve"],
                       env=environ, check=True, capture_output=True)
        apply_seconds = time.perf_counter() - started
        device_seconds = add_devices(env, args.devices, args.deployments)

        noop = measure_plan(env, environ)
        changed = max(1, args.models // 100)
        for i in range(changed):
            (repo / "models" / f"m{i * 100:04d}" / "weights.bin").write_bytes(os.urandom(16 * 1024))
        delta = measure_plan(env, environ)

    print(f"environment: {args.models} models, {args.images} images, {args.deployments} deployments, "
          f"{args.devices} devices")
    print(f"setup: first apply {apply_seconds:.1f} s, adding devices {device_seconds:.1f} s")
    print(f"{'plan':<22} {'seconds':>8} {'peak MB':>8} {'changes':>8} {'bytes hashed':>13}")
    print(f"{'no-op':<22} {noop[0]:>8.2f} {noop[1]:>8.0f} {noop[2]:>8} {noop[3]:>13}")
    print(f"{f'{changed} models changed':<22} {delta[0]:>8.2f} {delta[1]:>8.0f} {delta[2]:>8} {delta[3]:>13}")
    ok = noop[0] < 5 and noop[1] < 500 and noop[2] == 0 and noop[3] == 0
    print("targets (no-op under 5 s and 500 MB, no change, no model file read):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
