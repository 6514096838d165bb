"""The profile LRU across workers: two apps (= two uvicorn workers) on one real Redis and one real
shard. A flush in one worker reaches the other through the invalidation channel; without a live
subscription a worker validates every cache hit against the version key; a lost subscription
empties the cache when it comes back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from persona_agent.app import create
from persona_agent.settings import PersonaAgentSettings
from unde_testkit.service_auth import service_client


def uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def settings(shard_dsn: str, redis_url: str) -> PersonaAgentSettings:
    return PersonaAgentSettings.load(shard_0_db_url=shard_dsn, redis_url=redis_url.rsplit("/", 1)[0] + "/13")


@pytest.fixture
def workers(settings: PersonaAgentSettings) -> Iterator[tuple[TestClient, TestClient]]:
    with service_client(create(settings)) as a, service_client(create(settings)) as b:
        for c in (a, b):
            wait_for(lambda c=c: c.app.state.service.tracking, "the invalidation subscription")
        yield a, b


def wait_for(cond: object, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def source(c: TestClient, user: str) -> str:
    r = c.post("/persona", json={"user_id": user})
    assert r.status_code == 200, r.text
    return str(r.json()["debug"]["state_source"])


def formality(c: TestClient, user: str) -> float:
    out = c.post("/persona", json={"user_id": user}).json()
    return float(out["persona_directive"]["blocks"]["style"]["values"]["formality"])


def learn(c: TestClient, user: str, exchange: str) -> None:
    body = {"user_id": user, "signal_id": uid(), "exchange_id": exchange, "signal_type": "formality_up"}
    assert c.post("/persona/feedback", json=body).status_code == 200
    r = c.post("/persona/flush", json={"user_id": user, "exchange_id": exchange})
    assert r.status_code == 200, r.text


def test_flush_in_one_worker_invalidates_the_other(workers: tuple[TestClient, TestClient]) -> None:
    a, b = workers
    user = uid()
    assert source(b, user) == "shard" and source(b, user) == "cache"
    before = formality(b, user)
    learn(a, user, "e1")
    # the invalidation arrives asynchronously (same Redis, sub-millisecond): poll until B reloads
    deadline = time.monotonic() + 5
    while (src := source(b, user)) == "cache":
        assert time.monotonic() < deadline, "worker B kept serving its stale cached profile"
    assert src == "shard"
    assert formality(b, user) == pytest.approx(before + 0.06)
    assert source(b, user) == "cache"


def test_without_subscription_every_hit_is_validated(workers: tuple[TestClient, TestClient]) -> None:
    a, b = workers
    b.portal.call(b.app.state.service.stop_tracking, b.app.state.tracker)  # type: ignore[attr-defined,union-attr]
    wait_for(lambda: not b.app.state.service.tracking, "the subscription to stop")  # type: ignore[attr-defined]
    user = uid()
    assert source(b, user) == "shard" and source(b, user) == "cache"
    learn(a, user, "e1")
    assert source(b, user) == "shard"  # the version key changed: no waiting needed


def test_lost_subscription_empties_the_cache_when_back(
    workers: tuple[TestClient, TestClient], redis_url: str
) -> None:
    _, b = workers
    user = uid()
    assert source(b, user) == "shard" and source(b, user) == "cache"
    r = redis.Redis.from_url(redis_url)
    assert r.client_kill_filter(_type="pubsub") >= 1
    # the tracker reconnects and, having missed messages meanwhile, drops every cached profile
    deadline = time.monotonic() + 8
    while source(b, user) == "cache":
        assert time.monotonic() < deadline, "the cache survived a lost invalidation subscription"
        time.sleep(0.05)
    wait_for(lambda: b.app.state.service.tracking, "the subscription to come back")  # type: ignore[attr-defined]
