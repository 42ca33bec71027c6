"""ARM's throttling of a subscription's reads (``arm.throttle_reads``): a token bucket per subscription and
principal, opt-in. Driven with plain HTTP through the emulator's proxy; the answers go through the contract check
like every other (the 429 against ``ModelContainers_List``'s ``default`` ErrorResponse). Imports no product code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from . import arm
from .server import AzureEmulator
from .testing import isolated_home

SUB = "00000000-0000-4000-8000-0000000000b3"
OTHER_SUB = "00000000-0000-4000-8000-0000000000b4"
RG = "rg-throttle"
WS = "ws-throttle"
MODELS = (f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}/providers"
          f"/Microsoft.MachineLearningServices/workspaces/{WS}/models")
API = {"api-version": "2023-08-01-preview"}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEmulator]:
    # This package's own AzureEmulator: its routes are then the modules imported here (``arm``'s ResourceKey).
    with isolated_home(tmp_path_factory.mktemp("home")), AzureEmulator() as running, running.environ():
        yield running


@pytest.fixture
def fresh(emulator: AzureEmulator) -> Iterator[AzureEmulator]:
    emulator.reset()
    arm.add_workspace(emulator.state, SUB, RG, WS)
    yield emulator
    assert emulator.errors == [] and emulator.unmatched == []


def _headers(client_id: str = "principal-a") -> dict[str, str]:
    token = arm.access_token(arm.ARM_AUDIENCE, arm.DEFAULT_TENANT, client_id)
    return {"Authorization": f"Bearer {token}"}


def _get(url: str = MODELS, client_id: str = "principal-a") -> requests.Response:
    return requests.get(url, params=API, headers=_headers(client_id), timeout=10)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_refills_at_its_rate_up_to_its_size() -> None:
    clock = FakeClock()
    bucket = arm.ReadBucket(250, 25.0, clock)
    assert [bucket.take("k").remaining for _ in range(250)][-3:] == [2, 1, 0]
    assert bucket.take("k") == arm.Admission(False, retry_after=1)  # a token in 0.04 s: ARM says 1 whole second
    clock.now += 0.041
    assert bucket.take("k") == arm.Admission(True, remaining=0)
    assert not bucket.take("k").admitted  # the refused request took no token ...
    clock.now += 0.041
    assert bucket.take("k").admitted  # ... so the next one is there 0.04 s later
    clock.now += 3600
    assert bucket.take("k").remaining == 249  # never more than the bucket holds
    assert bucket.take("other key").remaining == 249  # keys have buckets of their own
    assert (bucket.admitted, bucket.refused) == (254, 2)


def test_a_slow_refill_asks_for_the_whole_seconds_a_token_takes() -> None:
    clock = FakeClock()
    bucket = arm.ReadBucket(1, 0.25, clock)
    assert bucket.take("k").admitted
    assert bucket.take("k").retry_after == 4
    clock.now += 3.5
    assert bucket.take("k").retry_after == 1


def test_off_by_default_reads_carry_no_rate_limit_header(fresh: AzureEmulator) -> None:
    answers = [_get() for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(arm.REMAINING_READS_HEADER not in a.headers for a in answers)


def test_over_the_bucket_reads_are_answered_429_with_retry_after_and_do_not_reach_the_service(
        fresh: AzureEmulator) -> None:
    bucket = arm.throttle_reads(fresh.state, size=3, refill=0.5)
    answers = [_get() for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers.get(arm.REMAINING_READS_HEADER) for a in answers[:3]] == ["2", "1", "0"]
    refused = answers[3]
    assert refused.headers["Retry-After"] == "2"  # one token at 0.5 per second
    error = refused.json()["error"]
    assert error["code"] == "SubscriptionRequestsThrottled"
    assert error["message"].startswith(f"Number of 'read' requests for subscription '{SUB}' actor '")
    assert "Please try again after '2' seconds after additional tokens are available." in error["message"]
    assert (bucket.admitted, bucket.refused) == (3, 1)
    assert [c.status for c in fresh.calls(host="management.azure.com")] == [200, 200, 200, 429]


def test_the_bucket_is_per_subscription_and_principal_and_counts_only_reads(fresh: AzureEmulator) -> None:
    arm.add_workspace(fresh.state, OTHER_SUB, RG, WS, registry_name="emuacr2")
    arm.throttle_reads(fresh.state, size=1, refill=0.01)
    assert _get().status_code == 200
    assert _get().status_code == 429
    assert _get(client_id="principal-b").status_code == 200  # another service principal
    assert _get(MODELS.replace(SUB, OTHER_SUB)).status_code == 200  # another subscription
    # writes are another operation type (a bucket of their own, not modelled): not counted, not refused
    put = requests.put(f"{MODELS}/m1", params=API, headers=_headers(), timeout=10,
                       json={"properties": {"description": "d", "tags": {}, "properties": {}}})
    assert put.status_code in (200, 201) and arm.REMAINING_READS_HEADER not in put.headers
    # tenant-level reads are not subscription reads; a request without a token gets its route's 401
    assert requests.get("https://management.azure.com/subscriptions", params={"api-version": "2022-01-01"},
                        headers=_headers(), timeout=10).status_code == 200
    assert requests.get(MODELS, params=API, timeout=10).status_code == 401


def test_a_fresh_bucket_is_full_and_stopping_turns_it_off(fresh: AzureEmulator) -> None:
    arm.throttle_reads(fresh.state, size=1, refill=0.01)
    assert [_get().status_code for _ in range(2)] == [200, 429]
    arm.throttle_reads(fresh.state, size=1, refill=0.01)
    assert _get().status_code == 200
    arm.stop_throttling_reads(fresh.state)
    assert [_get().status_code for _ in range(3)] == [200, 200, 200]
    arm.throttle_reads(fresh.state)
    fresh.reset()  # a reset forgets the bucket with the rest of the state
    arm.add_workspace(fresh.state, SUB, RG, WS)
    assert arm.REMAINING_READS_HEADER not in _get().headers
