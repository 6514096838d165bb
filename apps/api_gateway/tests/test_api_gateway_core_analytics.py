"""PostHog capture from the gateway against the loopback PostHog simulator: events arrive in
batches PostHog accepts, with the anonymised id and no content; with PostHog down, refusing or
slow, capture never waits, full queues drop and every drop is counted; session start/end over
HTTP send their events with the duration."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api_gateway.analytics import Analytics, anonymous_id
from api_gateway.app import create
from api_gateway.auth import issue_tokens
from api_gateway.settings import ApiGatewaySettings
from unde_common.metrics import AppMetrics
from unde_testkit.gateway_testbed import gateway_settings
from unde_testkit.posthog_simulator import POSTHOG_KEY, PostHogSimulator
from unde_testkit.testing import LoopbackServer, PostgresHandle, free_port
from unde_testkit.testing_sql import migrate_database

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def posthog() -> Iterator[tuple[PostHogSimulator, str]]:
    sim = PostHogSimulator()
    with LoopbackServer(sim.app) as server:
        yield sim, server.url


@pytest.fixture(scope="module")
def dbs(pg: PostgresHandle) -> tuple[str, str]:
    return migrate_database(pg, "gw_an_main", "unde_main"), migrate_database(pg, "gw_an_shard", "unde_shard")


def settings_for(dbs: tuple[str, str], redis_url: str, host: str, **overrides: str) -> ApiGatewaySettings:
    values = {"POSTHOG_HOST": host, "POSTHOG_API_KEY": POSTHOG_KEY, "ANALYTICS_FLUSH_INTERVAL_S": "0.05"}
    return gateway_settings(dbs[0], dbs[1], redis_url, **{**values, **overrides})


def dropped(metrics: AppMetrics, reason: str) -> float:
    return sum(
        s.value
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == "api_gateway_analytics_dropped_total" and s.labels.get("reason") == reason
    )


async def wait_for(check: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_events_reach_posthog_anonymised_in_batches(
    posthog: tuple[PostHogSimulator, str], dbs: tuple[str, str], redis_url: str
) -> None:
    sim, url = posthog
    sim.reset()
    settings = settings_for(dbs, redis_url, url)
    user = uuid.uuid4()

    async def run() -> None:
        analytics = Analytics(settings, AppMetrics("api_gateway", process_collectors=False))
        await analytics.start()
        for n in range(5):
            assert analytics.capture_user("recommendation_shown", user, {"cards": n})
        await wait_for(lambda: len(sim.events) == 5)
        await analytics.close()

    asyncio.run(run())
    assert sim.refused == []
    assert sim.requests <= 2  # batched, not one request per event
    expected = anonymous_id(user, settings.analytics_id_key.get_secret_value())
    assert {e["distinct_id"] for e in sim.events} == {expected} and str(user) not in expected
    assert [e["properties"]["cards"] for e in sim.events] == [0, 1, 2, 3, 4]
    assert all(e["timestamp"] for e in sim.events)


def test_content_and_unknown_events_are_refused(dbs: tuple[str, str], redis_url: str) -> None:
    analytics = Analytics(
        settings_for(dbs, redis_url, "http://127.0.0.1:9"), AppMetrics("x", process_collectors=False)
    )
    with pytest.raises(ValueError, match="text"):
        analytics.capture("user_message_sent", "abc", {"text": "my secret"})
    with pytest.raises(ValueError, match="unknown analytics event"):
        analytics.capture("message_text", "abc", {})


def test_posthog_down_drops_and_counts_without_waiting(dbs: tuple[str, str], redis_url: str) -> None:
    """Nobody listens at the PostHog address: a burst beyond the queue is dropped at once (the
    sender never ran in between: capture awaited nothing), the queued ones are dropped by the
    failing send; both counted."""
    settings = settings_for(
        dbs, redis_url, f"http://127.0.0.1:{free_port()}", ANALYTICS_QUEUE_SIZE="5", POSTHOG_TIMEOUT_S="1"
    )
    metrics = AppMetrics("api_gateway", process_collectors=False)

    async def run() -> list[bool]:
        analytics = Analytics(settings, metrics)
        await analytics.start()
        accepted = [analytics.capture("session_start", "anon", {"n": n}) for n in range(20)]
        await wait_for(lambda: dropped(metrics, "send_failed") == 5)
        await analytics.close(flush_timeout_s=0.1)
        return accepted

    accepted = asyncio.run(run())
    assert accepted == [True] * 5 + [False] * 15
    assert dropped(metrics, "queue_full") == 15


@pytest.mark.parametrize("mode", ["error5xx", "slow"])
def test_posthog_refusing_or_slow_drops_the_batch(
    mode: str, posthog: tuple[PostHogSimulator, str], dbs: tuple[str, str], redis_url: str
) -> None:
    sim, url = posthog
    sim.reset()
    sim.mode, sim.delay_s = mode, 3.0
    settings = settings_for(dbs, redis_url, url, POSTHOG_TIMEOUT_S="0.3")
    metrics = AppMetrics("api_gateway", process_collectors=False)

    async def run() -> None:
        analytics = Analytics(settings, metrics)
        await analytics.start()
        for n in range(3):
            analytics.capture("avatar_interaction", "anon", {"n": n})
        await wait_for(lambda: dropped(metrics, "send_failed") == 3)
        await analytics.close(flush_timeout_s=0.1)

    try:
        asyncio.run(run())
    finally:
        sim.reset()
    assert sim.events == []


def test_session_start_and_end_send_their_events(
    posthog: tuple[PostHogSimulator, str], dbs: tuple[str, str], redis_url: str
) -> None:
    sim, url = posthog
    sim.reset()
    settings = settings_for(dbs, redis_url, url)
    user = uuid.uuid4()
    headers = {"Authorization": f"Bearer {issue_tokens(settings, user, 0)['access_token']}"}
    with TestClient(create(settings)) as c:
        start = c.post("/api/v1/session/start", json={"platform": "android"}, headers=headers)
        assert start.status_code == 200, start.text
        session_id = start.json()["session_id"]
        end = c.post("/api/v1/session/end", json={"session_id": session_id}, headers=headers)
        assert end.status_code == 200 and end.json()["duration_s"] >= 0
        # an end the gateway never saw start uses the app's own count
        other = str(uuid.uuid4())
        late = c.post("/api/v1/session/end", json={"session_id": other, "duration_s": 42}, headers=headers)
        assert late.json()["duration_s"] == 42
        bad = c.post("/api/v1/session/end", json={"session_id": "x"}, headers=headers)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "session_id"]
        deadline = time.monotonic() + 10
        while len(sim.events) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    names = [(e["event"], e["properties"].get("duration_source")) for e in sim.events]
    assert names == [("session_start", None), ("session_end", "server"), ("session_end", "client")]
    anon = anonymous_id(user, settings.analytics_id_key.get_secret_value())
    assert {e["distinct_id"] for e in sim.events} == {anon}
    assert sim.events[0]["properties"]["platform"] == "android"
