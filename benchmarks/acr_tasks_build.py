"""What an image build costs with ``azure.images.builder: acr-tasks``: requests per build and wall time.

Copies the prod sample (one model, one image) with ``acr-tasks``, registers the model, then builds ``--images``
images (copies of the sample's Image spec under other names) in one apply, through the engine (so builds run
``build_slots`` at a time), against the Azure emulator with ``--latency`` seconds added to every request and each
ACR Tasks run taking ``--run-seconds``. Prints the requests per build by service, the wall time and the
process's CPU time (user + sys) of the apply.

Usage: python benchmarks/acr_tasks_build.py [--images N] [--latency S] [--run-seconds S]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def service(host: str, path: str) -> str:
    if host == "management.azure.com":
        return "ARM (ACR Tasks)" if any(p in path for p in ("/scheduleRun", "/runs/", "/listBuildSourceUploadUrl")) \
            else "ARM (other)"
    if host.endswith(".blob.core.windows.net"):
        return "blob"
    if host.endswith(".azurecr.io"):
        return "ACR data plane"
    if host.endswith(".azure-devices.net"):
        return "IoT Hub"
    if host == "login.microsoftonline.com":
        return "AAD"
    return "Azure ML"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every request")
    parser.add_argument("--run-seconds", type=float, default=2.0, help="how long each ACR Tasks run takes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HOME"] = tmp  # before azureml is imported: it caches discovery under HOME
        from tests.azure import conftest as azure
        from tests.azure_emulator import acr_tasks, arm, iothub
        from tests.azure_emulator.server import AzureEmulator
        from tests.conftest import copy_sample

        os.environ.update({"AZURE_TENANT_ID": arm.DEFAULT_TENANT, "AZURE_CLIENT_ID": "edge-reconciler-bench",
                           "AZURE_CLIENT_SECRET": azure.CLIENT_SECRET,
                           "IOTHUB_CONNECTION_STRING": azure.CONNECTION_STRING,
                           "RECONCILER_RETRY_SCALE": "1", "RECONCILER_CACHE_DIR": f"{tmp}/cache", "CI": "1"})
        with AzureEmulator() as emulator, emulator.environ():
            arm.add_workspace(emulator.state, azure.SUBSCRIPTION, azure.RESOURCE_GROUP, azure.WORKSPACE,
                              registry_name=azure.ACR)
            iothub.seed_devices(emulator.state, [("dev-1", {"environment": "prod"})], hub=azure.HUB)
            env = copy_sample(Path(tmp) / "repo", "prod")
            (env / "deployments.yaml").unlink()  # builds only
            environment = env / "environment.yaml"
            environment.write_text(environment.read_text().replace(
                "  registries:\n", "    images:\n      builder: acr-tasks\n  registries:\n", 1))
            images = env / "images.yaml"
            spec = images.read_text()
            images.write_text("---\n".join(spec.replace("name: iris-scorer ", f"name: iris-scorer-{i} ", 1)
                                           for i in range(args.images)))

            from reconciler.engine import Engine
            from reconciler.model.specs import Kind

            (env / "images.yaml").rename(env / "images.off")
            with Engine(env) as engine:  # the model first: not part of the figures
                engine.apply()
            (env / "images.off").rename(env / "images.yaml")
            acr_tasks.set_run_duration(emulator.state, args.run_seconds)
            emulator.faults.add(latency=args.latency)
            emulator.reset_log()
            cpu, wall = time.process_time(), time.perf_counter()
            with Engine(env) as engine:
                result = engine.apply()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            built = sum(1 for change in result.applied if change.key.kind is Kind.IMAGE)
            calls = emulator.calls()
            runs = acr_tasks.runs_of(emulator.state)

    by_service = Counter(service(c.host, c.path) for c in calls)
    print(f"{built} image builds with ACR Tasks in one apply (Azure emulator, real SDKs, {args.latency * 1000:.0f} ms "
          f"per request, {args.run_seconds:.1f} s per run; the machine is shared, figures are noisy)")
    print(f"apply: {wall:.2f} s wall, {cpu:.2f} s CPU (user+sys) of this process, {len(calls)} requests")
    tasks = by_service["ARM (ACR Tasks)"] + by_service["blob"]
    print(f"per build: {tasks / max(1, built):.1f} ACR Tasks + blob requests "
          f"({', '.join(f'{k} {v}' for k, v in sorted(by_service.items()))} in all)")
    overlap = sorted(r.created for r in runs)
    print(f"runs started within {overlap[-1] - overlap[0]:.2f} s of each other" if overlap else "no runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
