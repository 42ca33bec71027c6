"""How many Azure calls a plan costs: a no-op plan and a 1% change, against the emulator.

Generates 500 models, 25 images (20 models each), 100 deployments (IoT Hub's limit) and
20,000 edge devices; applies them once through the real SDKs against the Azure emulator
(tests/azure_emulator, an HTTPS proxy on 127.0.0.1); then counts, from the emulator's
request log, the HTTP requests per service of:

* a no-op plan (must be bounded: one list per kind plus paging, never one per resource);
* a plan after 1% of the model files changed (5 models);
* one rollout evaluation (``apply --rollouts-only`` with nothing due) while 10 of the 100
  deployments are in a staged rollout: it should cost one configuration list plus the metrics
  of the rolling deployments, and nothing per model or image.

and the wall time of each plan (and the CPU time of this process meanwhile: the client's and the in-process
emulator's), optionally with a latency injected into every request the plans make (``--latency 0.05``: 50 ms
per request, a round trip to Azure from a CI runner).

``--sdk v2`` runs the same with ``azure.ml.sdk: v2`` (models through azure-ai-ml, images by ACR Tasks); its model
requests are ARM requests under the workspace (``{ws}/models``, ``{ws}/datastores``), counted as ``aml-models``.

``--foreign-models N`` registers N model names of someone else (one version each, no ownership tags) in the
workspace before the timed plans: what a shared workspace holds besides the environment's own models.

``--arm-read-bucket SIZE:REFILL`` (Azure's figures: ``250:25``) measures the no-op and the changed plan a second
time, with ARM's throttling of a subscription's reads on in the emulator (``arm.throttle_reads``: a token bucket of
SIZE reads refilled at REFILL per second, full at the start of the plan) and the provider's retries waiting what
the service asks (``RECONCILER_RETRY_SCALE=1``; the set-up applies run with waits scaled down, without the bucket).
The ``429s`` column counts the reads the emulator refused.

Usage: python benchmarks/azure_calls.py [--models N] [--images N] [--deployments N] [--devices N] [--rolling N]
       [--latency S] [--sdk v1|v2] [--foreign-models N] [--arm-read-bucket SIZE:REFILL]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCORE = "def init():\n    pass\n\n\ndef run(input_data):\n    return input_data\n"
CONDA = "name: scorer\ndependencies:\n  - python=3.10\n  - pip:\n    - azureml-defaults\n"


ROLLOUT = """  rollout:
    rings:
      - {name: canary, targetCondition: "tags.ring='canary'", soak: 30m}
"""


def generate(repo: Path, models: int, images: int, deployments: int, azure: object, sdk: str = "v1") -> Path:
    (repo / ".git").mkdir(parents=True)
    env = repo / "environments" / "bench"
    env.mkdir(parents=True)
    code = repo / "code"
    code.mkdir()
    (code / "score.py").write_text(SCORE)
    (code / "conda.yaml").write_text(CONDA)
    (env / "environment.yaml").write_text(f"""apiVersion: reconciler/v1
kind: Environment
metadata: {{name: bench}}
spec:
  provider: azure
  azure:
    subscriptionId: {azure.SUBSCRIPTION}
    resourceGroup: {azure.RESOURCE_GROUP}
    workspace: {azure.WORKSPACE}
    iotHub:
      hostName: {azure.HUB}
      connectionString: {{fromEnv: IOTHUB_CONNECTION_STRING}}
    ml: {{sdk: {sdk}}}
  registries:
    workspace: {{acr: {azure.ACR}, credentials: scopedToken}}
""")  # type: ignore[attr-defined]
    write_specs(env, models, images, deployments)
    return env


def write_specs(env: Path, models: int, images: int, deployments: int, rolling: int = 0) -> None:
    """The Model, Image and Deployment specs; the first ``rolling`` deployments get a ring and new
    content (an environment variable), so each of them is in a staged rollout once applied."""
    repo = env.parents[1]
    docs = []
    for i in range(models):
        folder = repo / "models" / f"m{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.json").write_text(f'{{"model": {i}}}')
        docs.append(f"apiVersion: reconciler/v1\nkind: Model\nmetadata: {{name: m{i:03d}}}\n"
                    f"spec:\n  path: ../../models/m{i:03d}\n")
    per_image = max(1, models // images)
    for i in range(images):
        names = ", ".join(f"m{k:03d}" for k in range(i * per_image, min(models, (i + 1) * per_image)))
        docs.append(f"apiVersion: reconciler/v1\nkind: Image\nmetadata: {{name: img{i:02d}}}\n"
                    f"spec:\n  entryScript: score.py\n  condaFile: conda.yaml\n  sourceDirectory: ../../code\n"
                    f"  models: [{names}]\n")
    for i in range(deployments):
        docs.append(f"apiVersion: reconciler/v1\nkind: Deployment\nmetadata: {{name: dep{i:03d}}}\n"
                    f"spec:\n  targetCondition: tags.site='s{i:03d}'\n  priority: 10\n  registry: workspace\n"
                    f"  modules:\n    scorer:\n      image: img{i % images:02d}\n"
                    + (f"      env: {{ROLLOUT: '2'}}\n{ROLLOUT}" if i < rolling else ""))
    (env / "specs.yaml").write_text("---\n".join(docs))


def seed_foreign_models(state: object, azure: object, count: int) -> None:
    """``count`` model names registered by someone else: one version each, without ownership tags."""
    from tests.azure_emulator import aml, arm

    workspace = arm.find_workspace(state, azure.SUBSCRIPTION, azure.RESOURCE_GROUP, azure.WORKSPACE)  # type: ignore
    assert workspace is not None
    with state.lock:  # type: ignore[attr-defined]
        counters = aml._aml(state).setdefault("model_versions", {})  # type: ignore[arg-type]
        for n in range(count):
            name = f"foreign-{n:04d}"
            counters[(workspace.key, name)] = 1
            aml._models(state, workspace)[f"{name}:1"] = aml.ModelRecord(  # type: ignore[arg-type]
                name, 1, "aml://asset/" + "0" * 32, kv_tags={"team": "someone-else"})


def by_service(calls: list) -> Counter[str]:  # type: ignore[type-arg]
    def service(host: str) -> str:
        for suffix, name in (("azure-devices.net", "iothub"), ("modelmanagement.azureml.net", "aml-models"),
                             ("experiments.azureml.net", "aml-artifacts"), ("api.azureml.ms", "aml-discovery"),
                             ("azurecr.io", "acr-data"), ("blob.core.windows.net", "blob"),
                             ("management.azure.com", "arm"), ("login.microsoftonline.com", "aad")):
            if host.endswith(suffix):
                return name
        return host
    def of(call: object) -> str:
        if call.status == 429:  # type: ignore[attr-defined]
            return "429s"  # refused (ARM's read bucket): counted apart, and in the requests
        path = str(call.path)  # type: ignore[attr-defined]
        if "/workspaces/" in path and ("/models" in path or "/datastores" in path):
            return "aml-models"  # SDK v2: the workspace's model and datastore resources, on ARM
        return service(call.host)  # type: ignore[attr-defined]
    return Counter(of(call) for call in calls)


Bucket = tuple[int, float]  # ARM's read bucket: size, refill per second
SCALED_DOWN = "0.001"  # RECONCILER_RETRY_SCALE of the set-up applies (IoT Hub's write pacing, scaled down)


def arm_read_bucket(text: str) -> Bucket:
    size, _, refill = text.partition(":")
    try:
        bucket = int(size), float(refill)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SIZE:REFILL (e.g. 250:25)") from None
    if bucket[0] < 1 or bucket[1] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the size must be >= 1 and the refill > 0")
    return bucket


def throttled(emulator: object, bucket: Bucket | None) -> None:
    """ARM's read bucket on (full) with the retries' waits as the service asks, or off with them scaled down."""
    from tests.azure_emulator import arm

    if bucket is None:
        arm.stop_throttling_reads(emulator.state)  # type: ignore[attr-defined]
        os.environ["RECONCILER_RETRY_SCALE"] = SCALED_DOWN
    else:
        arm.throttle_reads(emulator.state, *bucket)  # type: ignore[attr-defined]
        os.environ["RECONCILER_RETRY_SCALE"] = "1"


def plan_calls(env: Path, emulator: object, hub: str, bucket: Bucket | None = None) -> tuple[float, int, Counter[str]]:
    from reconciler.engine import Engine
    from tests.azure_emulator import iothub

    # The emulator works out which deployments reach which devices (about 10 s of CPU for 100 deployments and
    # 20,000 devices, in this process) on the first read after a change; the real hub does that on its own
    # schedule. Done before the clock starts, so the time is the client's.
    # Likewise the 20,000 twins its device queries run on (rendered once per change of the hub).
    with emulator.state.lock:  # type: ignore[attr-defined]
        iothub.get_hub(emulator.state, hub).assignment()  # type: ignore[attr-defined]
        iothub.get_hub(emulator.state, hub).twin_docs()  # type: ignore[attr-defined]
    emulator.reset_log()  # type: ignore[attr-defined]
    throttled(emulator, bucket)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        with Engine(env) as engine:
            plan = engine.plan()
    finally:
        throttled(emulator, None)
    elapsed = time.perf_counter() - started
    CPU[len(CPU)] = time.process_time() - cpu
    return elapsed, len(plan.changes), by_service(emulator.calls())  # type: ignore[attr-defined]


CPU: dict[int, float] = {}  # CPU seconds (user + system) of each timed run, this process: client and emulator


def rollout_calls(env: Path, emulator: object, hub: str) -> tuple[float, int, Counter[str]]:
    """One ``apply --rollouts-only``, 10 minutes into the rollouts (nothing due yet): the hub's clock moves on by
    those 10 minutes too, so it has evaluated the candidates' metrics (every 5 minutes); that evaluation, the
    emulator's work, is done before the clock starts."""
    from reconciler.engine import Engine
    from tests.azure_emulator import iothub

    iothub.advance_clock(emulator.state, 600)  # type: ignore[attr-defined]
    with emulator.state.lock:  # type: ignore[attr-defined]
        iothub.get_hub(emulator.state, hub).evaluate_due()  # type: ignore[attr-defined]
    emulator.reset_log()  # type: ignore[attr-defined]
    started, cpu = time.perf_counter(), time.process_time()
    with Engine(env, clock=lambda: START + timedelta(minutes=10)) as engine:
        result = engine.apply(rollouts_only=True)
    elapsed = time.perf_counter() - started
    CPU[len(CPU)] = time.process_time() - cpu
    return elapsed, len(result.applied), by_service(emulator.calls())  # type: ignore[attr-defined]


START = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--images", type=int, default=25)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request of the plans")
    parser.add_argument("--rolling", type=int, default=10, help="deployments in a staged rollout")
    parser.add_argument("--sdk", choices=["v1", "v2"], default="v1", help="azure.ml.sdk of the environment")
    parser.add_argument("--foreign-models", type=int, default=0,
                        help="model names of someone else in the workspace (one version each)")
    parser.add_argument("--arm-read-bucket", type=arm_read_bucket, default=None, metavar="SIZE:REFILL",
                        help="also time the plans with ARM's read throttling on (Azure's: 250:25)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HOME"] = tmp  # before azureml is imported: it caches discovery under HOME
        from tests.azure import conftest as azure
        from tests.azure_emulator import arm, iothub
        from tests.azure_emulator.server import AzureEmulator

        os.environ.update({"AZURE_TENANT_ID": arm.DEFAULT_TENANT, "AZURE_CLIENT_ID": "edge-reconciler-bench",
                           "AZURE_CLIENT_SECRET": azure.CLIENT_SECRET,
                           "IOTHUB_CONNECTION_STRING": azure.CONNECTION_STRING,
                           "RECONCILER_RETRY_SCALE": SCALED_DOWN, "RECONCILER_CACHE_DIR": f"{tmp}/cache", "CI": "1"})
        with AzureEmulator() as emulator, emulator.environ():
            arm.add_workspace(emulator.state, azure.SUBSCRIPTION, azure.RESOURCE_GROUP, azure.WORKSPACE,
                              registry_name=azure.ACR)
            iothub.seed_devices(emulator.state, [(f"dev{i:05d}", {"site": f"s{i % args.deployments:03d}",
                                                                   **({"ring": "canary"} if i % 10 == 0 else {})})
                                                 for i in range(args.devices)], hub=azure.HUB)
            repo = Path(tmp) / "repo"
            env = generate(repo, args.models, args.images, args.deployments, azure, args.sdk)

            from reconciler.engine import Engine

            started = time.perf_counter()
            with Engine(env, clock=lambda: START) as engine:
                result = engine.apply()
            apply_seconds = time.perf_counter() - started
            apply_calls = len(emulator.calls())

            seed_foreign_models(emulator.state, azure, args.foreign_models)
            if args.latency:  # the emulator's latency injection: every request, before it is answered
                emulator.faults.add(latency=args.latency)
            noop = plan_calls(env, emulator, azure.HUB)
            bucket = args.arm_read_bucket
            noop_throttled = plan_calls(env, emulator, azure.HUB, bucket) if bucket else None
            changed = max(1, args.models // 100)
            for i in range(changed):
                (repo / "models" / f"m{i * 100:03d}" / "weights.json").write_text(f'{{"model": {i}, "v": 2}}')
            delta = plan_calls(env, emulator, azure.HUB)
            delta_throttled = plan_calls(env, emulator, azure.HUB, bucket) if bucket else None

            # Rollouts: a rolling deployment holds 2 of the hub's 100 configurations, so 10 specs go
            # (pruned first: a start creates before anything is deleted) and 10 others start a rollout.
            kept = args.deployments - args.rolling
            write_specs(env, args.models, args.images, kept)
            with Engine(env, clock=lambda: START) as engine:
                engine.apply(prune=True)
            write_specs(env, args.models, args.images, kept, args.rolling)
            with Engine(env, clock=lambda: START) as engine:
                started = engine.apply()
            assert sum(1 for change in started.applied if change.step is not None) == args.rolling
            rollout = rollout_calls(env, emulator, azure.HUB)

    print(f"environment: {args.models} models, {args.images} images, {args.deployments} deployments, "
          f"{args.devices} devices (Azure emulator, real SDKs, {args.latency * 1000:.0f} ms per request, "
          f"Azure ML SDK {args.sdk}, {args.foreign_models} foreign model names)")
    print(f"setup: first apply of {len(result.applied)} changes in {apply_seconds:.1f} s, {apply_calls} HTTP requests")
    named = f"ARM {bucket[0]}:{bucket[1]:g}" if bucket else ""
    rows = [("no-op", noop), (f"no-op, {named}", noop_throttled), (f"{changed} models changed", delta),
            (f"{changed} changed, {named}", delta_throttled),
            (f"rollouts ({args.rolling} of {args.deployments})", rollout)]
    timed = [(label, row) for label, row in rows if row is not None]
    services = sorted(set().union(*(row[2] for _, row in timed)))
    print(f"{'plan':<24} {'changes':>8} {'seconds':>8} {'cpu s':>6} {'requests':>9}  "
          + " ".join(f"{s:>13}" for s in services))
    for index, (label, (seconds, changes, calls)) in enumerate(timed):
        print(f"{label:<24} {changes:>8} {seconds:>8.2f} {CPU[index]:>6.2f} {sum(calls.values()):>9}  "
              + " ".join(f"{calls.get(s, 0):>13}" for s in services))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
