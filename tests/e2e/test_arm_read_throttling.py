"""Through the CLI, on Azure, with ARM's throttling of a subscription's reads on (``arm.throttle_reads``, the token
bucket Microsoft documents: 250 reads, refilled at 25 per second, per subscription and principal).

SDK v2 reads the versions of each declared model name with one ARM request (``ModelVersions_List`` is per
container), so a plan with more names than the bucket holds is answered 429 + ``Retry-After`` part of the way: the
plan must still complete, each throttled read sent again once, after the ``Retry-After`` it was given (the provider's
``Retrier`` is the only one that repeats: the SDK clients are built with their retries off). A small bucket keeps
the test fast.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from tests.e2e.backends import AzureBackend
from tests.e2e.helpers import Workspace

# SDK v1 lists every version with one data-plane request and makes 3 ARM reads per plan whatever the number of
# models (benchmarks/azure_calls.py): it never meets the bucket, and is left out to keep the suite short.
pytestmark = pytest.mark.parametrize("backend", ["azure-v2"], indirect=True)

DECLARED_MODELS = 40  # iris-classifier and 39 more: four times the bucket below
BUCKET, REFILL = 10, 10.0  # refused reads even when a loaded machine spreads the plan over 3 s; a refill above
# the 8 reads in flight, so that no read is refused 6 times (see docs/azure.md, "SDK v2 and ARM's read limit")


def add_models(ws: Workspace, count: int) -> None:
    docs = []
    for n in range(count):
        folder = ws.root / "models" / "extra" / f"m{n:02d}"
        folder.mkdir(parents=True)
        (folder / "weights.json").write_text(f'{{"model": {n}}}')
        docs.append(f"apiVersion: reconciler/v1\nkind: Model\nmetadata: {{name: extra-{n:02d}}}\n"
                    f"spec:\n  path: ../../models/extra/m{n:02d}\n")
    (ws.env_dir / "extra-models.yaml").write_text("---\n".join(docs))


@pytest.fixture
def arm_answers(backend: AzureBackend) -> Iterator[list[tuple[float, str, int, str | None]]]:
    """(when, URL, status, Retry-After) of every answer ``management.azure.com`` gives, as it is sent."""
    from tests.azure_emulator import framework

    answers: list[tuple[float, str, int, str | None]] = []
    lock = threading.Lock()

    def observe(request: framework.Request, response: framework.Response) -> None:
        if request.host == "management.azure.com":
            url = f"{request.method} {request.path}?{urlencode(sorted(request.query.items()), doseq=True)}"
            with lock:
                answers.append((time.monotonic(), url, response.status, response.headers.get("Retry-After")))

    framework.response_observers.append(observe)
    try:
        yield answers
    finally:
        framework.response_observers.remove(observe)


def test_a_no_op_plan_over_the_read_bucket_completes_with_the_throttled_reads_retried_after_retry_after(
        ws: Workspace, backend: AzureBackend, arm_answers: list[tuple[float, str, int, str | None]],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from tests.azure_emulator import arm

    caplog.set_level(logging.INFO, logger="reconciler.providers.azure")

    add_models(ws, DECLARED_MODELS - 1)
    ws.apply()
    monkeypatch.setenv("RECONCILER_RETRY_SCALE", "1")  # waits as the service asks (the fixtures scale them down)
    bucket = arm.throttle_reads(backend.emulator.state, BUCKET, REFILL)
    arm_answers.clear()

    plan = ws.run("plan", ws.env, "--detailed-exitcode")

    assert plan.code == 0, plan.out + plan.err
    assert "No changes." in plan.out
    # One warning, for the first throttled read; the others are logged below it and counted in one closing line.
    throttled = [r for r in caplog.records if "SubscriptionRequestsThrottled" in r.getMessage()]
    assert [r.levelno for r in throttled] == [logging.WARNING] + [logging.INFO] * (bucket.refused - 1)
    assert f"Azure throttled {bucket.refused} requests this run; each was sent again after the wait" in plan.err
    reads = [a for a in arm_answers if a[1].startswith(("GET ", "HEAD "))]
    assert bucket.refused == sum(1 for a in reads if a[2] == 429)
    version_listings = {url for _, url, _, _ in reads if "/versions?" in url}
    assert len(version_listings) == DECLARED_MODELS
    assert bucket.refused > 0  # more reads than the bucket held (less what it refilled meanwhile)
    gaps, asked = [], {}
    for index, (when, url, status, retry_after) in enumerate(reads):
        asked[url] = asked.get(url, 0) + 1
        if status != 429:
            continue
        assert retry_after is not None
        again = next(a for a in reads[index + 1:] if a[1] == url)  # asked again: the plan did not give up
        gaps.append((again[0] - when, float(retry_after)))
    # Each URL was asked once more per 429 it got, and its last answer was 200: no retry behind the Retrier's back.
    refused = {url: sum(1 for a in reads if a[1] == url and a[2] == 429) for url in asked}
    assert all(asked[url] == refused[url] + 1 for url in asked)
    assert all(next(a[2] for a in reversed(reads) if a[1] == url) == 200 for url in asked)
    # ... after the Retry-After it was given, and not twice that (the SDK's own retry policy waiting as well).
    assert all(gap >= 0.95 * seconds for gap, seconds in gaps), min(gaps)
    assert statistics.median(gap / seconds for gap, seconds in gaps) < 2, sorted(gaps)
