"""AsyncProviderClient.stream: one streamed attempt, an error answer raised before the body is handed
over, the deadline cutting a stream anywhere (headers or any read), the caller's own exceptions
passing through; a loopback ProviderSimulator serves the faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError, RetryPolicy
from unde_testkit.testing import LoopbackServer, ProviderSimulator, free_port


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, ProviderSimulator]]:
    sim = ProviderSimulator()
    with LoopbackServer(sim.app) as server:
        yield server.url, sim


def _client(url: str, **changes: object) -> AsyncProviderClient:
    cfg = ProviderConfig(name="llm", base_url=url, retry=RetryPolicy(max_attempts=3, backoff_base_s=0.01))
    return AsyncProviderClient(cfg.with_(**changes))


def test_a_stream_hands_over_the_unread_body(served: tuple[str, ProviderSimulator]) -> None:
    url, _ = served

    async def run() -> bytes:
        async with _client(url) as client, client.stream("POST", "/echo", json={"a": 1}) as response:
            assert response.status_code == 200 and not response.is_stream_consumed
            return b"".join([chunk async for chunk in response.aiter_bytes()])

    body = asyncio.run(run())
    assert b'"a"' in body and b"POST" in body


def test_an_error_answer_is_raised_once_with_its_body(served: tuple[str, ProviderSimulator]) -> None:
    url, sim = served
    key = uuid.uuid4().hex

    async def run() -> None:
        async with _client(url) as client, client.stream("POST", f"/fail-then-ok/{key}?fails=5&status=503"):
            pytest.fail("an error answer must not be handed over")

    with pytest.raises(ProviderError) as info:
        asyncio.run(run())
    assert info.value.status == 503 and info.value.attempts == 1
    assert sim.hits[key] == 1  # never retried, even with a retry policy of 3 attempts


def test_a_429_names_the_wait_asked_for(served: tuple[str, ProviderSimulator]) -> None:
    url, _ = served

    async def run() -> None:
        async with (
            _client(url) as client,
            client.stream("POST", f"/rate-limited/{uuid.uuid4().hex}?times=1&retry_after=7"),
        ):
            pass

    with pytest.raises(ProviderError) as info:
        asyncio.run(run())
    assert info.value.status == 429 and "retry after 7s" in info.value.reason


def test_the_deadline_cuts_a_trickling_stream(served: tuple[str, ProviderSimulator]) -> None:
    url, _ = served

    async def run() -> int:
        received = 0
        async with (
            _client(url) as client,
            client.stream("GET", "/trickle?interval=0.2&bytes=200", deadline_s=0.6) as response,
        ):
            async for chunk in response.aiter_bytes():
                received += len(chunk)
        return received

    with pytest.raises(ProviderError) as info:
        asyncio.run(run())
    assert info.value.reason.startswith("deadline") and info.value.status is None


def test_the_deadline_covers_waiting_for_the_headers(served: tuple[str, ProviderSimulator]) -> None:
    url, _ = served

    async def run() -> None:
        async with _client(url) as client, client.stream("GET", "/slow?delay=5", deadline_s=0.3):
            pass

    with pytest.raises(ProviderError) as info:
        asyncio.run(run())
    assert info.value.reason.startswith("deadline")


def test_no_answer_is_a_provider_error() -> None:
    async def run() -> None:
        async with _client(f"http://127.0.0.1:{free_port()}") as client, client.stream("GET", "/x"):
            pass

    with pytest.raises(ProviderError) as info:
        asyncio.run(run())
    assert info.value.status is None and "Connect" in info.value.reason


def test_the_callers_own_errors_and_timeouts_pass_through(served: tuple[str, ProviderSimulator]) -> None:
    url, _ = served

    async def own_error() -> None:
        async with _client(url) as client, client.stream("GET", "/ok"):
            raise KeyError("mine")

    async def own_timeout() -> None:
        async with (
            _client(url) as client,
            client.stream("GET", "/trickle?interval=0.2&bytes=50", deadline_s=10) as r,
        ):
            async with asyncio.timeout(0.3):
                async for _ in r.aiter_bytes():
                    pass

    with pytest.raises(KeyError):
        asyncio.run(own_error())
    with pytest.raises(TimeoutError):
        asyncio.run(own_timeout())
