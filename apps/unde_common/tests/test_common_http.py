from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from unde_common.http import (
    AsyncProviderClient,
    ProviderClient,
    ProviderConfig,
    ProviderError,
    RetryPolicy,
    parse_retry_after,
    provider_config,
    redact_url,
)
from unde_common.settings import HttpClientSettings
from unde_testkit.testing import LoopbackServer, ProviderSimulator, free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def fault_server() -> Iterator[tuple[LoopbackServer, ProviderSimulator]]:
    simulator = ProviderSimulator()
    with LoopbackServer(simulator.app) as server:
        yield server, simulator


FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)


def key() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def cfg(fault_server: tuple[LoopbackServer, ProviderSimulator]) -> ProviderConfig:
    server, _ = fault_server
    return ProviderConfig(name="ximilar", base_url=server.url, read_timeout_s=5, retry=FAST)


@pytest.fixture
def faults(fault_server: tuple[LoopbackServer, ProviderSimulator]) -> ProviderSimulator:
    return fault_server[1]


def test_5xx_then_success(cfg: ProviderConfig, faults: ProviderSimulator) -> None:
    k = key()
    with ProviderClient(cfg) as client:
        assert client.post_json(
            f"/fail-then-ok/{k}", params={"fails": 2, "status": 502}, json={}, idempotent=True
        ) == {"attempt": 3}
    assert faults.hits[k] == 3


def test_5xx_exhausted_names_provider_url_status_attempts(
    cfg: ProviderConfig, faults: ProviderSimulator
) -> None:
    k = key()
    with ProviderClient(cfg) as client, pytest.raises(ProviderError) as info:
        client.get_json(f"/fail-then-ok/{k}", params={"fails": 10, "status": 500, "key": "s3cret"})
    err = info.value
    assert (err.provider, err.status, err.attempts, err.method) == ("ximilar", 500, 3, "GET")
    assert faults.hits[k] == 3
    text = str(err)
    assert text.startswith("ximilar: GET http://127.0.0.1:") and f"/fail-then-ok/{k}" in text
    assert "HTTP 500" in text and "after 3 attempt(s)" in text
    assert "s3cret" not in text and "key=***" in text
    assert err.body is not None and "injected" in err.body


def test_429_honours_retry_after(cfg: ProviderConfig, faults: ProviderSimulator) -> None:
    k = key()
    start = time.monotonic()
    with ProviderClient(cfg) as client:
        assert client.get_json(f"/rate-limited/{k}", params={"retry_after": "1"}) == {"attempt": 2}
    assert time.monotonic() - start >= 0.95
    assert faults.hits[k] == 2


def test_429_with_too_long_retry_after_fails_at_once(cfg: ProviderConfig, faults: ProviderSimulator) -> None:
    k = key()
    start = time.monotonic()
    with ProviderClient(cfg) as client, pytest.raises(ProviderError) as info:
        client.get_json(f"/rate-limited/{k}", params={"retry_after": "3600"})
    assert time.monotonic() - start < 1
    assert info.value.status == 429 and info.value.attempts == 1
    assert "Retry-After 3600s exceeds the 30s limit" in str(info.value)


def test_read_timeout_is_retried_then_reported(cfg: ProviderConfig, faults: ProviderSimulator) -> None:
    before = faults.hits["slow"]
    slow_cfg = cfg.with_(read_timeout_s=0.2, retry=RetryPolicy(max_attempts=2, backoff_base_s=0.01))
    with ProviderClient(slow_cfg) as client, pytest.raises(ProviderError) as info:
        client.get_json("/slow", params={"delay": "1"})
    err = info.value
    assert err.status is None and err.attempts == 2 and "ReadTimeout" in err.reason
    assert "no response" in str(err)
    assert faults.hits["slow"] - before == 2


def test_connect_error_is_retried_then_reported() -> None:
    cfg = ProviderConfig(name="gemini", base_url=f"http://127.0.0.1:{free_port()}", retry=FAST)
    with ProviderClient(cfg) as client, pytest.raises(ProviderError) as info:
        client.post_json("/v1beta/models/x:countTokens", json={}, idempotent=True)
    assert info.value.attempts == 3 and "ConnectError" in info.value.reason
    assert str(info.value).startswith("gemini: POST http://127.0.0.1:")


def test_malformed_json(cfg: ProviderConfig, faults: ProviderSimulator) -> None:
    with ProviderClient(cfg) as client, pytest.raises(ProviderError) as info:
        client.get_json("/malformed")
    assert info.value.status == 200 and "malformed JSON" in str(info.value)
    assert info.value.attempts == 1


def test_4xx_is_not_retried(cfg: ProviderConfig, faults: ProviderSimulator) -> None:
    before = faults.hits["missing"]
    with ProviderClient(cfg) as client, pytest.raises(ProviderError) as info:
        client.get_json("/missing")
    assert info.value.status == 404 and info.value.attempts == 1
    assert faults.hits["missing"] - before == 1


def test_retry_can_be_turned_off_per_call(cfg: ProviderConfig, faults: ProviderSimulator) -> None:
    k = key()
    with ProviderClient(cfg) as client, pytest.raises(ProviderError):
        client.post_json(f"/fail-then-ok/{k}", params={"fails": 1}, json={}, retry=False)
    assert faults.hits[k] == 1


def test_provider_config_from_settings_and_headers(
    fault_server: tuple[LoopbackServer, ProviderSimulator],
) -> None:
    server, _ = fault_server
    settings = HttpClientSettings(app_name="llm_reranker", http_read_timeout_s=7, http_max_attempts=4)
    cfg = provider_config(settings, "gemini", server.url, headers={"x-goog-api-key": "k"})
    assert cfg.read_timeout_s == 7 and cfg.retry.max_attempts == 4 and cfg.name == "gemini"
    with ProviderClient(cfg) as client:
        body = client.post_json("/echo", json={"a": 1}, params={"q": "1"})
    assert body == {
        "method": "POST",
        "query": {"q": "1"},
        "json": {"a": 1},
        "headers": {"x-goog-api-key": "k"},
    }


def test_async_client_same_behaviour(cfg: ProviderConfig, faults: ProviderSimulator) -> None:
    k1, k2, k3 = key(), key(), key()

    async def main() -> None:
        async with AsyncProviderClient(cfg) as client:
            results = await asyncio.gather(
                client.get_json(f"/fail-then-ok/{k1}", params={"fails": 2}),
                client.get_json(f"/rate-limited/{k2}", params={"retry_after": "0.2"}),
            )
            assert list(results) == [{"attempt": 3}, {"attempt": 2}]
            with pytest.raises(ProviderError) as info:
                await client.get_json(f"/fail-then-ok/{k3}", params={"fails": 9, "status": 503})
            assert info.value.attempts == 3 and info.value.status == 503
            with pytest.raises(ProviderError, match="malformed JSON"):
                await client.get_json("/malformed")
            slow = AsyncProviderClient(cfg.with_(read_timeout_s=0.1, retry=RetryPolicy(max_attempts=1)))
            async with slow:
                with pytest.raises(ProviderError, match="ReadTimeout"):
                    await slow.get_json("/slow", params={"delay": "1"})

    asyncio.run(main())
    assert faults.hits[k1] == 3 and faults.hits[k2] == 2 and faults.hits[k3] == 3


def test_retry_after_parsing_and_backoff() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=10), usegmt=True), now=now) == 10
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    policy = RetryPolicy(backoff_base_s=1, backoff_max_s=4)
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (6, 4)):
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jitter


def test_redact_url() -> None:
    assert redact_url("https://u:p@api.x.com/v1?key=abc&q=1") == "https://***@api.x.com/v1?key=***&q=1"
