"""The flush crash window, for real: a persona agent process (uvicorn) whose Redis stops taking
writes right after the shard transaction of a flush committed — the idempotency result is never
written, the buffered signals stay — and the retry of that flush once Redis is back. The retry must
answer the same result from the shard's flush journal (migration 0005) and apply nothing twice.

Sequencing is deterministic: the test holds the user's relationship_stage row lock, so the flush
waits inside its shard transaction (seen in pg_stat_activity); then Redis is paused for writes
(``CLIENT PAUSE … WRITE``: reads go on, every write blocks) and the row lock released."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from persona_agent.settings import PersonaAgentSettings
from unde_testkit.service_auth import ServiceTokenAuth
from unde_testkit.testing import EnvWriterFactory, free_port, redis_server, running_service

pytestmark = pytest.mark.timeout(180)
#: the test tokens of unde_testkit: the caller on /persona/*, monitoring on /metrics
AUTH = ServiceTokenAuth()


@pytest.fixture
def agent(shard_dsn: str, tmp_path: Path, env_writer: EnvWriterFactory) -> Iterator[tuple[str, redis.Redis]]:
    with redis_server(tmp_path / "redis") as url:  # its own Redis: this test pauses it
        base = url.rsplit("/", 1)[0]
        port = free_port()
        env_file = env_writer(PersonaAgentSettings)(
            {
                "SHARD_0_DB_URL": shard_dsn,
                "REDIS_URL": f"{base}/13",
                "SHARD_ROUTING_REDIS_URL": f"{base}/12",
                "PERSONA_PORT": str(port),
                "PERSONA_WORKERS": "1",
                "HOST": "127.0.0.1",
            }
        )
        agent_url = f"http://127.0.0.1:{port}"
        live = agent_url + "/health/live"
        with running_service([sys.executable, "-m", "persona_agent"], env_file, live, tmp_path / "agent.log"):
            yield agent_url, redis.Redis.from_url(f"{base}/13")


def shard_state(dsn: str, user: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        stage = conn.execute(
            "SELECT total_exchanges, positive_signals_count FROM relationship_stage WHERE user_id = %s",
            (user,),
        ).fetchone()
        profile = conn.execute("SELECT profile FROM persona_profiles WHERE user_id = %s", (user,)).fetchone()
        deltas = conn.execute(
            "SELECT field, total_delta FROM signal_daily_deltas WHERE user_id = %s ORDER BY field", (user,)
        ).fetchall()
        journal = conn.execute(
            "SELECT exchange_id, applied_with, result IS NOT NULL FROM persona_applied_flushes"
            " WHERE user_id = %s ORDER BY exchange_id",
            (user,),
        ).fetchall()
    return stage, profile, deltas, journal


def test_flush_retried_after_the_commit_window_applies_nothing_twice(
    agent: tuple[str, redis.Redis], shard_dsn: str
) -> None:
    url, r = agent
    user = str(uuid.uuid4())
    for kind in ("formality_up", "emoji_mirrored"):
        body = {"user_id": user, "signal_id": str(uuid.uuid4()), "exchange_id": "e1", "signal_type": kind}
        assert httpx.post(url + "/persona/feedback", json=body, auth=AUTH, timeout=10).status_code == 200

    answers: list[httpx.Response] = []
    with psycopg.connect(shard_dsn) as holder:
        holder.execute("INSERT INTO relationship_stage (user_id) VALUES (%s)", (user,))
        holder.commit()
        holder.execute("SELECT 1 FROM relationship_stage WHERE user_id = %s FOR UPDATE", (user,))
        flush = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    url + "/persona/flush", json={"user_id": user, "exchange_id": "e1"}, auth=AUTH, timeout=30
                )
            )
        )
        flush.start()
        with psycopg.connect(shard_dsn, autocommit=True) as watch:
            deadline = time.monotonic() + 20
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%relationship_stage%%FOR UPDATE%%'"
            )
            while watch.execute(waiting).fetchone() != (1,):
                assert time.monotonic() < deadline, "the flush never reached its shard transaction"
                time.sleep(0.02)
        r.execute_command("CLIENT", "PAUSE", "20000", "WRITE")  # type: ignore[no-untyped-call]
        holder.commit()  # the flush commits its shard transaction now; its Redis writes block
    flush.join(timeout=30)
    r.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
    assert answers and answers[0].status_code == 503, answers[0].text if answers else "no answer"
    assert answers[0].json()["error"] == "redis_unavailable"

    committed = shard_state(shard_dsn, user)
    assert committed[0][0] == 1 and committed[3] == [("e1", "e1", True)]
    # the crash window: no idempotency result in Redis, the signals still buffered
    assert r.get(f"persona:result:flush:{user}:e1") is None
    assert r.hlen(f"persona:buf:{user}:e1") == 2
    r.delete(f"persona:lock:{user}")  # the failed flush's lock, which its 10 s TTL would end

    retry = httpx.post(
        url + "/persona/flush", json={"user_id": user, "exchange_id": "e1"}, auth=AUTH, timeout=30
    )
    assert retry.status_code == 200, retry.text
    assert sorted(s["signal_type"] for s in retry.json()["resolved"]) == ["emoji_mirrored", "formality_up"]
    assert shard_state(shard_dsn, user) == committed  # nothing applied a second time
    assert r.hlen(f"persona:buf:{user}:e1") == 0  # the buffer is cleared by the retry
    assert r.get(f"persona:result:flush:{user}:e1") is not None
    metrics = httpx.get(url + "/metrics", auth=AUTH, timeout=10).text
    assert 'persona_agent_flushes_total{outcome="replay_shard"} 1.0' in metrics
    # a third call is answered from the Redis/in-process result
    again = httpx.post(
        url + "/persona/flush", json={"user_id": user, "exchange_id": "e1"}, auth=AUTH, timeout=30
    )
    assert again.json() == retry.json() and shard_state(shard_dsn, user) == committed
