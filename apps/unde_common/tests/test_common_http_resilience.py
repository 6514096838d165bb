"""The shared HTTP client against the loopback ProviderSimulator: retries only for calls that may
be repeated, provider retry hints (Gemini RetryInfo / daily QuotaFailure, Anthropic 529 +
retry-after), one deadline per logical call that a trickling server cannot stretch, the
per-client concurrency cap and the circuit breaker."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from unde_common.http import (
    AsyncProviderClient,
    CircuitBreaker,
    ProviderClient,
    ProviderConfig,
    ProviderError,
    RetryPolicy,
    is_idempotent,
    parse_retry_hint,
    provider_config,
)
from unde_common.settings import HttpClientSettings
from unde_testkit.testing import LoopbackServer, ProviderSimulator

pytestmark = pytest.mark.timeout(90)

FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
DAILY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
#: a deadline cut is checked as "cut near the deadline", with a margin generous enough for a
#: loaded CI machine: this is a correctness check of the cut, not a speed target
MARGIN_S = 2.5


@pytest.fixture(scope="module")
def fault_server() -> Iterator[tuple[LoopbackServer, ProviderSimulator]]:
    simulator = ProviderSimulator()
    with LoopbackServer(simulator.app) as server:
        yield server, simulator


@pytest.fixture
def cfg(fault_server: tuple[LoopbackServer, ProviderSimulator]) -> ProviderConfig:
    return ProviderConfig(name="gemini", base_url=fault_server[0].url, read_timeout_s=5, retry=FAST)


@pytest.fixture
def sim(fault_server: tuple[LoopbackServer, ProviderSimulator]) -> ProviderSimulator:
    return fault_server[1]


def key() -> str:
    return uuid.uuid4().hex


# ----------------------------------------------------------------------------- idempotency


def test_which_calls_may_be_repeated() -> None:
    assert all(is_idempotent(m) for m in ("GET", "head", "PUT", "DELETE", "OPTIONS"))
    assert not is_idempotent("POST") and not is_idempotent("patch")
    assert is_idempotent("POST", True) and not is_idempotent("GET", False)


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/fail-then-ok/{k}", {"fails": 2, "status": 503}, 503),
        ("/fail-then-ok/{k}", {"fails": 2, "status": 500}, 500),
        ("/rate-limited/{k}", {"times": 2, "retry_after": "0"}, 429),
        ("/google-429/{k}", {"times": 2, "retry_delay": "0s"}, 429),
        ("/overloaded/{k}", {"times": 2, "retry_after": "0"}, 529),
    ],
)
def test_a_post_is_not_retried_unless_marked_idempotent(
    cfg: ProviderConfig, sim: ProviderSimulator, path: str, params: dict[str, object], status: int
) -> None:
    k = key()
    with ProviderClient(cfg) as client:
        with pytest.raises(ProviderError) as info:
            client.post_json(path.format(k=k), params=params, json={"contents": []})
        assert (info.value.status, info.value.attempts, sim.hits[k]) == (status, 1, 1)
        # the same call marked idempotent is retried and answered
        assert client.post_json(path.format(k=k), params=params, json={}, idempotent=True) == {"attempt": 3}


def test_a_post_that_times_out_is_not_sent_again(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    before = sim.hits["slow"]
    with ProviderClient(cfg.with_(read_timeout_s=0.2)) as client, pytest.raises(ProviderError) as info:
        client.request("POST", "/slow", params={"delay": "1"}, json={})
    assert info.value.attempts == 1 and "ReadTimeout" in info.value.reason
    assert sim.hits["slow"] - before == 1


def test_methods_and_overrides(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k1, k2, k3 = key(), key(), key()
    with ProviderClient(cfg) as client:
        assert client.request("PUT", f"/fail-then-ok/{k1}", params={"fails": 2}).json() == {"attempt": 3}
        with pytest.raises(ProviderError) as info:
            client.request("PATCH", f"/fail-then-ok/{k1}", params={"fails": 4})
        assert info.value.attempts == 1
        with pytest.raises(ProviderError) as info:
            client.get_json(f"/fail-then-ok/{k2}", params={"fails": 1}, idempotent=False)
        assert info.value.attempts == 1
        with pytest.raises(ProviderError) as info:
            client.get_json(f"/fail-then-ok/{k3}", params={"fails": 1}, idempotent=True, retry=False)
        assert info.value.attempts == 1
    assert (sim.hits[k1], sim.hits[k2], sim.hits[k3]) == (4, 1, 1)


def test_async_post_is_not_retried_unless_marked(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k1, k2 = key(), key()

    async def main() -> None:
        async with AsyncProviderClient(cfg) as client:
            with pytest.raises(ProviderError) as info:
                await client.post_json(f"/fail-then-ok/{k1}", params={"fails": 1}, json={})
            assert info.value.attempts == 1
            answer = await client.post_json(
                f"/fail-then-ok/{k2}", params={"fails": 2}, json={}, idempotent=True
            )
            assert answer == {"attempt": 3}

    asyncio.run(main())
    assert (sim.hits[k1], sim.hits[k2]) == (1, 3)


def test_retry_refused_repeats_a_post_only_after_a_refusal(
    cfg: ProviderConfig, sim: ProviderSimulator
) -> None:
    k1, k2, k3, k4 = key(), key(), key(), key()
    before = sim.hits["slow"]
    start = time.monotonic()
    with ProviderClient(cfg) as client:
        # a Gemini 429 refused the call: nothing was generated, so it is sent again after RetryInfo
        assert client.post_json(
            f"/google-429/{k1}", params={"retry_delay": "1s"}, json={}, retry_refused=True
        ) == {"attempt": 2}
        assert time.monotonic() - start >= 0.95
        assert client.post_json(f"/overloaded/{k2}", json={}, retry_refused=True) == {"attempt": 2}
        assert client.post_json(f"/fail-then-ok/{k3}", params={"fails": 1}, json={}, retry_refused=True) == {
            "attempt": 2
        }  # 503
        with pytest.raises(ProviderError) as info:  # a 500 may have done the work: not repeated
            client.post_json(
                f"/fail-then-ok/{k4}", params={"fails": 1, "status": 500}, json={}, retry_refused=True
            )
        assert info.value.attempts == 1
        with pytest.raises(ProviderError) as info:  # no answer: maybe processed, not repeated
            client.post_json("/slow", params={"delay": "1"}, json={}, retry_refused=True, timeout=0.2)
        assert info.value.attempts == 1 and "ReadTimeout" in info.value.reason
        with pytest.raises(ProviderError, match="daily quota"):
            client.post_json(f"/google-429/{key()}", params={"quota_id": DAILY}, json={}, retry_refused=True)
    assert (sim.hits[k1], sim.hits[k2], sim.hits[k3], sim.hits[k4]) == (2, 2, 2, 1)
    assert sim.hits["slow"] - before == 1


def test_async_retry_refused(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k1, k2 = key(), key()

    async def main() -> None:
        async with AsyncProviderClient(cfg) as client:
            assert await client.post_json(
                f"/rate-limited/{k1}", params={"retry_after": "0"}, json={}, retry_refused=True
            ) == {"attempt": 2}
            with pytest.raises(ProviderError) as info:
                await client.post_json(
                    f"/fail-then-ok/{k2}", params={"fails": 1, "status": 502}, json={}, retry_refused=True
                )
            assert info.value.attempts == 1

    asyncio.run(main())
    assert (sim.hits[k1], sim.hits[k2]) == (2, 1)


# ----------------------------------------------------------------------------- retry hints


def test_gemini_429_with_retry_info_waits_as_asked(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k = key()
    start = time.monotonic()
    with ProviderClient(cfg) as client:
        assert client.get_json(f"/google-429/{k}", params={"retry_delay": "1.2s"}) == {"attempt": 2}
    assert time.monotonic() - start >= 1.15  # the backoff alone would be < 0.05 s
    assert sim.hits[k] == 2


def test_gemini_daily_quota_is_fatal(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k = key()
    start = time.monotonic()
    with ProviderClient(cfg) as client, pytest.raises(ProviderError) as info:
        client.post_json(
            f"/google-429/{k}", params={"retry_delay": "1s", "quota_id": DAILY}, json={}, idempotent=True
        )
    assert time.monotonic() - start < 1
    assert info.value.status == 429 and info.value.attempts == 1 and sim.hits[k] == 1
    assert f"daily quota exhausted ({DAILY})" in str(info.value)
    assert info.value.body is not None and "RESOURCE_EXHAUSTED" in info.value.body


def test_gemini_retry_delay_over_the_cap_fails_at_once(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k = key()
    with ProviderClient(cfg) as client, pytest.raises(ProviderError) as info:
        client.get_json(f"/google-429/{k}", params={"retry_delay": "3600s"})
    assert info.value.attempts == 1 and "Retry-After 3600s exceeds the 30s limit" in str(info.value)


def test_anthropic_529_is_retried_after_its_retry_after(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k1, k2 = key(), key()
    start = time.monotonic()
    with ProviderClient(cfg.with_(name="anthropic")) as client:
        assert client.post_json(
            f"/overloaded/{k1}", params={"retry_after": "1"}, json={}, idempotent=True
        ) == {"attempt": 2}
        assert time.monotonic() - start >= 0.95
        assert client.get_json(f"/overloaded/{k2}", params={"times": 2}) == {"attempt": 3}  # backoff
    assert (sim.hits[k1], sim.hits[k2]) == (2, 3)


def test_retry_hint_parsing() -> None:
    def hint(
        status: int, headers: dict[str, str] | None = None, body: object = None
    ) -> tuple[float | None, str]:
        request = httpx.Request("POST", "https://example.test/")
        r = httpx.Response(status, headers=headers, json=body, request=request)
        h = parse_retry_hint(r)
        return h.delay_s, h.fatal

    def google(*details: object) -> dict[str, object]:
        return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": list(details)}}

    retry_info = "type.googleapis.com/google.rpc.RetryInfo"
    quota = "type.googleapis.com/google.rpc.QuotaFailure"
    assert hint(429, {"retry-after-ms": "1500", "retry-after": "9"}) == (1.5, "")
    assert hint(529, {"retry-after": "3"}) == (3.0, "")
    assert hint(429, body=google({"@type": retry_info, "retryDelay": "34.5s"})) == (34.5, "")
    assert hint(429, body=google({"@type": retry_info, "retryDelay": "900ms"})) == (0.9, "")
    assert hint(429, body=google({"@type": retry_info, "retryDelay": {"seconds": 2, "nanos": 5e8}})) == (
        2.5,
        "",
    )
    # a header wins over the body's delay
    assert hint(429, {"retry-after": "7"}, google({"@type": retry_info, "retryDelay": "18s"})) == (7.0, "")
    per_minute = {"@type": quota, "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]}
    assert hint(429, body=google(per_minute, {"@type": retry_info, "retryDelay": "20s"})) == (20.0, "")
    daily = {"@type": quota, "violations": [{"quotaId": DAILY}]}
    assert hint(429, body=google(daily, {"@type": retry_info, "retryDelay": "20s"}))[1].startswith(
        "daily quota"
    )
    assert hint(429, body=[google({"@type": retry_info, "retryDelay": "4s"})]) == (4.0, "")  # list-wrapped
    assert hint(503, body={"error": "busy"}) == (None, "")
    assert hint(429, body=google({"@type": retry_info, "retryDelay": "soon"})) == (None, "")


# ----------------------------------------------------------------------------- deadline


def test_a_trickling_server_is_cut_at_the_deadline(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    before = len(sim.trickled)
    deadline = 1.5
    start = time.monotonic()
    with ProviderClient(cfg.with_(read_timeout_s=5)) as client, pytest.raises(ProviderError) as info:
        # a byte every 0.2 s for 20 s: each byte resets the 5 s read timeout
        client.get_json("/trickle", params={"interval": "0.2", "bytes": "100"}, deadline_s=deadline)
    elapsed = time.monotonic() - start
    err = info.value
    assert err.reason == "deadline 1.5s exceeded" and err.attempts == 1 and err.status == 200
    assert deadline - 0.1 <= elapsed < deadline + MARGIN_S
    # the server saw the hang-up and stopped trickling well before its 100 bytes
    wait_until = time.monotonic() + 10
    while len(sim.trickled) == before and time.monotonic() < wait_until:
        time.sleep(0.1)
    assert len(sim.trickled) > before and sim.trickled[-1] < 100


def test_async_trickling_server_is_cut_at_the_deadline(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    deadline = 1.5

    async def main() -> float:
        async with AsyncProviderClient(cfg.with_(deadline_s=deadline)) as client:
            start = time.monotonic()
            with pytest.raises(ProviderError) as info:
                await client.post_json("/trickle", params={"interval": "0.2", "bytes": "100"}, json={})
            assert info.value.reason == "deadline 1.5s exceeded" and info.value.attempts == 1
            return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert deadline - 0.1 <= elapsed < deadline + MARGIN_S


def test_a_short_trickle_within_the_deadline_is_read_whole(cfg: ProviderConfig) -> None:
    with ProviderClient(cfg) as client:
        assert client.get_json("/trickle", params={"interval": "0.05", "bytes": "5"}, deadline_s=10) == {}


def test_one_deadline_across_retries(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k = key()
    slow_backoff = cfg.with_(retry=RetryPolicy(max_attempts=5, backoff_base_s=4.0, backoff_max_s=4.0))
    start = time.monotonic()
    with ProviderClient(slow_backoff) as client, pytest.raises(ProviderError) as info:
        client.get_json(f"/fail-then-ok/{k}", params={"fails": 9}, deadline_s=1.0)
    assert time.monotonic() - start < 1.0  # no sleep past the deadline: it fails before sleeping
    assert info.value.attempts == 1 and info.value.status == 503
    assert "would pass the 1s deadline" in info.value.reason
    assert sim.hits[k] == 1


def test_a_slow_answer_is_cut_at_the_deadline_not_the_read_timeout(cfg: ProviderConfig) -> None:
    start = time.monotonic()
    with (
        ProviderClient(cfg.with_(read_timeout_s=30, deadline_s=0.8)) as client,
        pytest.raises(ProviderError) as info,
    ):
        client.get_json("/slow", params={"delay": "5"})
    assert info.value.reason == "deadline 0.8s exceeded" and info.value.status is None
    assert time.monotonic() - start < 0.8 + MARGIN_S


def test_deadline_default_comes_from_settings(fault_server: tuple[LoopbackServer, ProviderSimulator]) -> None:
    assert HttpClientSettings(app_name="x").http_deadline_s == 60.0
    settings = HttpClientSettings(app_name="x", http_deadline_s=12)
    assert provider_config(settings, "ximilar", fault_server[0].url).deadline_s == 12
    assert provider_config(settings, "apify", fault_server[0].url, deadline_s=90).deadline_s == 90


# ----------------------------------------------------------------------------- concurrency cap


def test_concurrency_cap_sync(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k = key()
    results: list[object] = []
    with ProviderClient(cfg.with_(max_concurrency=2)) as client:

        def call() -> None:
            results.append(client.get_json(f"/concurrent/{k}", params={"delay": "0.3"}))

        threads = [threading.Thread(target=call) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [{"ok": True}] * 6 and sim.peak[k] == 2


def test_concurrency_cap_async_and_slot_wait_counts_against_the_deadline(
    cfg: ProviderConfig, sim: ProviderSimulator
) -> None:
    k1, k2, k3 = key(), key(), key()

    async def main() -> None:
        async with AsyncProviderClient(cfg.with_(max_concurrency=2)) as client:
            results = await asyncio.gather(
                *(client.get_json(f"/concurrent/{k1}", params={"delay": "0.3"}) for _ in range(6))
            )
            assert list(results) == [{"ok": True}] * 6
            busy = [
                asyncio.create_task(client.get_json(f"/concurrent/{k2}", params={"delay": "2"}))
                for _ in range(2)
            ]
            await asyncio.sleep(0.3)
            with pytest.raises(ProviderError, match="no free slot of 2 within the deadline"):
                await client.get_json(f"/concurrent/{k3}", deadline_s=0.3)
            await asyncio.gather(*busy)
        async with AsyncProviderClient(cfg) as uncapped:
            await asyncio.gather(
                *(uncapped.get_json(f"/concurrent/{k3}", params={"delay": "0.3"}) for _ in range(6))
            )

    asyncio.run(main())
    assert sim.peak[k1] == 2 and sim.peak[k2] == 2 and sim.peak[k3] > 2


# ----------------------------------------------------------------------------- circuit breaker


def test_circuit_breaker_opens_fails_fast_and_recovers(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    k = key()
    breaker_cfg = cfg.with_(retry=RetryPolicy(max_attempts=1), breaker_failures=2, breaker_open_s=0.5)
    path, params = f"/fail-then-ok/{k}", {"fails": 3, "status": 503}
    with ProviderClient(breaker_cfg) as client:
        with pytest.raises(ProviderError, match="HTTP 404"):
            client.get_json("/missing")  # a caller's error: the provider answered
        for _ in range(2):
            with pytest.raises(ProviderError, match="HTTP 503"):
                client.get_json(path, params=params)
        assert client.breaker is not None and client.breaker.state == "open"
        with pytest.raises(ProviderError) as info:
            client.get_json(path, params=params)
        assert info.value.status is None and info.value.attempts == 0
        assert "circuit open after 2 consecutive failures" in str(info.value)
        assert sim.hits[k] == 2  # failed fast: nothing sent
        time.sleep(0.6)
        with pytest.raises(ProviderError, match="HTTP 503"):  # the half-open trial fails: open again
            client.get_json(path, params=params)
        with pytest.raises(ProviderError, match="circuit open"):
            client.get_json(path, params=params)
        time.sleep(0.6)
        assert client.get_json(path, params=params) == {"attempt": 4}  # the trial succeeds: closed
        assert client.breaker.state == "closed"
        assert client.get_json(path, params=params) == {"attempt": 5}


def test_circuit_breaker_async_counts_timeouts(cfg: ProviderConfig, sim: ProviderSimulator) -> None:
    async def main() -> None:
        breaker_cfg = cfg.with_(read_timeout_s=0.1, retry=RetryPolicy(max_attempts=1), breaker_failures=1)
        async with AsyncProviderClient(breaker_cfg) as client:
            with pytest.raises(ProviderError, match="ReadTimeout"):
                await client.get_json("/slow", params={"delay": "1"})
            with pytest.raises(ProviderError, match="circuit open after 1 consecutive failures"):
                await client.get_json("/ok")

    asyncio.run(main())


def test_circuit_breaker_half_open_admits_one_trial() -> None:
    now = [100.0]
    breaker = CircuitBreaker(failures=1, open_s=10, clock=lambda: now[0])
    assert breaker.admit() == (None, False)
    breaker.settle(False, trial=False)
    assert breaker.state == "open" and breaker.admit()[0] is not None
    now[0] += 10
    assert breaker.state == "half-open"
    assert breaker.admit() == (None, True)
    refusal, trial = breaker.admit()
    assert refusal == "circuit half-open, a trial call is in flight" and not trial
    breaker.settle(None, trial=True)  # the trial was cancelled: the next call may try
    assert breaker.admit() == (None, True)
    breaker.settle(True, trial=True)
    assert breaker.state == "closed" and breaker.admit() == (None, False)
