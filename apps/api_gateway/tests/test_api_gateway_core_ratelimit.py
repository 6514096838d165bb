"""Per-user token buckets on a real Redis: 429 + Retry-After past the burst, one user's bucket
never touches another's, a cost above the burst is charged as the whole bucket, a Redis that is
down lets requests through (counted), and the defaults are the group_vars values."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import yaml
from fastapi.testclient import TestClient

from api_gateway.app import create
from api_gateway.auth import issue_tokens
from api_gateway.ratelimit import RateLimitedError, RateLimiter
from api_gateway.settings import DEFAULT_RATE_LIMITS, Rate
from unde_common.metrics import AppMetrics
from unde_testkit.gateway_testbed import gateway_settings
from unde_testkit.testing import PostgresHandle, free_port
from unde_testkit.testing_sql import migrate_database

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[3]


def counter(metrics: AppMetrics, name: str) -> float:
    return sum(
        s.value
        for f in metrics.registry.collect()
        for s in f.samples
        if s.name == f"api_gateway_test_{name}_total"
    )


def test_defaults_are_the_group_vars_values() -> None:
    entry = yaml.safe_load((REPO / "group_vars/all/entry.yml").read_text())
    assert {k: Rate(**v) for k, v in entry["unde_rate_limits"].items()} == DEFAULT_RATE_LIMITS
    assert DEFAULT_RATE_LIMITS["replay"].rate == 1.0  # the spec's one pair per second per user


def test_429_with_retry_after_past_the_burst_per_user(pg: PostgresHandle, redis_url: str) -> None:
    main = migrate_database(pg, "gw_rl_main", "unde_main")
    shard = migrate_database(pg, "gw_rl_shard", "unde_shard")
    limits = json.dumps({"session": {"rate": 0.01, "burst": 3}})
    settings = gateway_settings(main, shard, redis_url, RATE_LIMITS=limits)
    assert settings.rate_limits["session"] == Rate(rate=0.01, burst=3)
    assert settings.rate_limits["chat"] == DEFAULT_RATE_LIMITS["chat"]  # buckets left out keep defaults
    alice, bob = uuid.uuid4(), uuid.uuid4()

    def headers(user: uuid.UUID) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_tokens(settings, user, 0)['access_token']}"}

    with TestClient(create(settings)) as c:
        codes = [
            c.post("/api/v1/session/start", json={}, headers=headers(alice)).status_code for _ in range(4)
        ]
        refused = c.post("/api/v1/session/start", json={}, headers=headers(alice))
        other = c.post("/api/v1/session/start", json={}, headers=headers(bob))
        metrics = c.get("/metrics", headers={"Authorization": "Bearer x"})
    assert codes == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited" and "session" in refused.json()["detail"]
    # one token comes back in 100 s at 0.01/s
    assert 90 <= int(refused.headers["retry-after"]) <= 100
    assert other.status_code == 200
    assert metrics.status_code in (401, 403)  # /metrics stays monitoring-only


def test_bucket_refills_and_caps_costs(redis_url: str) -> None:
    async def run() -> None:
        client = aioredis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/14")
        metrics = AppMetrics("api_gateway_test", process_collectors=False)
        limiter = RateLimiter(
            client, {"fast": Rate(rate=1000, burst=1), "pairs": Rate(rate=0.01, burst=10)}, metrics
        )
        user = uuid.uuid4()
        await limiter.check(user, "fast")
        await asyncio.sleep(0.05)  # 50 tokens' worth of refill, capped at the burst of 1
        await limiter.check(user, "fast")
        # a replay of 25 pairs costs the whole bucket of 10, and the next one waits
        await limiter.check(user, "pairs", cost=25)
        with pytest.raises(RateLimitedError) as info:
            await limiter.check(user, "pairs", cost=1)
        assert info.value.bucket == "pairs" and info.value.retry_after_s >= 90
        assert counter(metrics, "rate_limited") == 1
        ttl = await client.pttl(f"gw:rl:pairs:{user}")
        assert 0 < ttl <= 1_001_000  # kept only until the bucket would be full again
        await client.aclose()

    asyncio.run(run())


def test_redis_down_lets_requests_through_and_counts() -> None:
    async def run() -> None:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/14", socket_connect_timeout=0.5)
        metrics = AppMetrics("api_gateway_test", process_collectors=False)
        limiter = RateLimiter(client, {"chat": Rate(rate=0.01, burst=1)}, metrics)
        for _ in range(3):
            await limiter.check(uuid.uuid4(), "chat")
        assert counter(metrics, "rate_limit_errors") == 3
        await client.aclose()

    asyncio.run(run())
