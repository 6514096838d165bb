"""The persona agent over HTTP against a real PostgreSQL (shard schema from files/sql) and a real
Redis: the four endpoints, bad input, idempotency, momentum caps, stage upgrades, temp blocks,
the 04:00 cleanup job and a shard outage."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from persona_agent.app import create
from persona_agent.cli import main as cleanup_main
from persona_agent.settings import PersonaAgentSettings
from unde_testkit.service_auth import service_client
from unde_testkit.testing import EnvWriter, EnvWriterFactory, free_port


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(PersonaAgentSettings)


@pytest.fixture
def redis13(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + "/13"


@pytest.fixture(scope="module")
def client(shard_dsn: str, redis_url: str) -> Iterator[TestClient]:
    settings = PersonaAgentSettings.load(
        shard_0_db_url=shard_dsn, redis_url=redis_url.rsplit("/", 1)[0] + "/13", persona_stale_after_s=0.3
    )
    with service_client(create(settings)) as c:
        yield c


def uid() -> str:
    return str(uuid.uuid4())


def feedback(c: TestClient, user: str, exchange: str, kind: str, **extra: Any) -> dict[str, Any]:
    body = {
        "user_id": user,
        "signal_id": extra.pop("signal_id", uid()),
        "exchange_id": exchange,
        "signal_type": kind,
    }
    r = c.post("/persona/feedback", json={**body, **extra})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def flush(c: TestClient, user: str, exchange: str) -> dict[str, Any]:
    r = c.post("/persona/flush", json={"user_id": user, "exchange_id": exchange})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_unknown_user_gets_defaults(client: TestClient) -> None:
    r = client.post("/persona", json={"user_id": uid()})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"persona_directive", "voice_params", "avatar_state", "render_hints", "debug"}
    assert len(out["persona_directive"]["blocks"]) == 7
    assert out["debug"]["stage"] == 0 and out["debug"]["state_source"] == "shard"
    assert out["voice_params"]["preset"] == "friendly_warm"
    profile = client.get("/persona/profile", params={"user_id": uid()}).json()
    assert profile["known"] is False and profile["relationship_stage"]["stage"] == 0
    assert profile["temp_blocks"] == []


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/persona", {}, ["body", "user_id"]),
        ("/persona", {"user_id": "nope"}, ["body", "user_id"]),
        (
            "/persona",
            {
                "user_id": "00000000-0000-4000-8000-000000000000",
                "mood_frame": {"emotion": {"valence": "happy"}},
            },
            ["body", "mood_frame", "emotion", "valence"],
        ),
        (
            "/persona",
            {"user_id": "00000000-0000-4000-8000-000000000000", "persona_profile": {"humor": "lots"}},
            ["body", "persona_profile", "humor"],
        ),
        ("/persona", {"user_id": "00000000-0000-4000-8000-000000000000", "relationship_stage": 7}, None),
        (
            "/persona/feedback",
            {"user_id": "00000000-0000-4000-8000-000000000000", "signal_id": "x", "exchange_id": "e"},
            ["body", "signal_id"],
        ),
        (
            "/persona/feedback",
            {
                "user_id": "00000000-0000-4000-8000-000000000000",
                "signal_id": "00000000-0000-4000-8000-000000000001",
                "exchange_id": "e",
                "signal_type": "humor_loved",
            },
            ["body", "signal_type"],
        ),
        ("/persona/flush", {"user_id": "00000000-0000-4000-8000-000000000000"}, ["body", "exchange_id"]),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], loc: list[str] | None
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    locs = [d["loc"] for d in r.json()["detail"]]
    assert loc is None or loc in locs, locs
    if loc is None:
        assert ["body", "relationship_stage"] in locs


def test_signal_strength_out_of_range_is_422(client: TestClient) -> None:
    r = client.post(
        "/persona/feedback",
        json={
            "user_id": uid(),
            "signal_id": uid(),
            "exchange_id": "e",
            "signal_type": "humor_positive",
            "signal_data": {"strength": 3},
        },
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "signal_data", "strength"]


def test_incompatible_contract_major_is_409(client: TestClient) -> None:
    r = client.post("/persona", json={"user_id": uid(), "contract_version": "1.0.0"})
    assert r.status_code == 409
    assert r.json()["error"] == "contract_incompatible" and r.json()["server_version"] == "0.7.0"
    r = client.post(
        "/persona/flush", json={"user_id": uid(), "exchange_id": "e"}, headers={"X-Persona-Contract": "2.1.0"}
    )
    assert r.status_code == 409
    r = client.get("/persona/profile", params={"user_id": uid()}, headers={"X-Persona-Contract": "0.9.1"})
    assert r.status_code == 200


def test_feedback_flush_applies_conservative_signals_with_caps(
    client: TestClient, shard_dsn: str, redis13: str
) -> None:
    user = uid()
    dup = uid()
    assert feedback(client, user, "e1", "humor_positive") == {"buffered": True, "duplicate": False}
    feedback(client, user, "e1", "humor_rejected", signal_id=dup)
    assert feedback(client, user, "e1", "humor_rejected", signal_id=dup)["duplicate"] is True
    feedback(client, user, "e1", "response_too_long")
    result = flush(client, user, "e1")
    assert sorted(s["signal_type"] for s in result["resolved"]) == ["humor_rejected", "response_too_long"]
    assert [(d["signal_type"], d["reason"]) for d in result["discarded"]] == [
        ("humor_positive", "conflict:conservative_wins")
    ]
    # humour is sensitive (±0.05 per exchange), verbosity safe (±0.10; the signal asks -0.08)
    assert result["applied"] == {
        "detail_orientation": -0.04,
        "humor_level": -0.05,
        "tease_level": -0.05,
        "verbosity": -0.08,
    }
    assert result["temp_blocks"] == ["humor"] and result["stale_flushed"] == 0
    assert flush(client, user, "e1") == result  # idempotent replay
    assert not redis.Redis.from_url(redis13).exists(f"persona:buf:{user}:e1")

    profile = client.get("/persona/profile", params={"user_id": user}).json()
    assert profile["known"] and profile["persona_profile"]["humor_level"] == pytest.approx(0.15)
    assert [b["key"] for b in profile["temp_blocks"]] == ["humor"]
    assert profile["relationship_stage"]["total_exchanges"] == 1
    out = client.post("/persona", json={"user_id": user, "persona_profile": {"humor_level": 0.3}}).json()
    values = out["persona_directive"]["blocks"]["style"]["values"]
    assert values["humor_level"] == 0.0 and values["verbosity"] == pytest.approx(0.42)
    assert out["debug"]["field_sources"]["humor_level"] == "hard_ban:temp_block:humor"
    with psycopg.connect(shard_dsn) as conn:
        rows = conn.execute(
            "SELECT field, total_delta FROM signal_daily_deltas WHERE user_id = %s ORDER BY field", (user,)
        ).fetchall()
    assert {f: v for f, v in rows}["humor_level"] == pytest.approx(-0.05)


def test_daily_cap_holds_across_many_exchanges(client: TestClient, shard_dsn: str) -> None:
    user = uid()
    for i in range(6):
        feedback(client, user, f"x{i}", "response_too_long")
        flush(client, user, f"x{i}")
    profile = client.get("/persona/profile", params={"user_id": user}).json()
    assert profile["persona_profile"]["verbosity"] == pytest.approx(0.5 - 0.30)
    with psycopg.connect(shard_dsn) as conn:
        total = conn.execute(
            "SELECT total_delta FROM signal_daily_deltas WHERE user_id = %s AND field = 'verbosity'", (user,)
        ).fetchone()
    assert total is not None and total[0] == pytest.approx(-0.30)


def test_stale_exchanges_are_flushed_with_the_next(client: TestClient) -> None:
    user = uid()
    feedback(client, user, "old", "emoji_mirrored")
    time.sleep(0.4)
    feedback(client, user, "new", "engagement_positive")
    result = flush(client, user, "new")
    assert result["stale_flushed"] == 1
    assert sorted(s["exchange_id"] for s in result["resolved"]) == ["new", "old"]


def test_stage_upgrade_when_requirements_hold(client: TestClient, shard_dsn: str) -> None:
    user = uid()
    now = datetime.now(UTC)
    with psycopg.connect(shard_dsn) as conn:
        conn.execute(
            "INSERT INTO relationship_stage (user_id, stage, stage_updated_at, sessions_count,"
            " total_exchanges, positive_signals_count, last_active_at) VALUES (%s, 0, %s, 2, 19, 1, %s)",
            (user, now - timedelta(days=3), now - timedelta(hours=2)),
        )
    feedback(client, user, "e", "engagement_positive")
    assert flush(client, user, "e")["relationship_stage"] == 1
    row = client.get("/persona/profile", params={"user_id": user}).json()["relationship_stage"]
    assert (row["stage"], row["sessions_count"], row["total_exchanges"], row["positive_signals_count"]) == (
        1,
        3,
        20,
        2,
    )
    out = client.post("/persona", json={"user_id": user, "relationship_stage": 3}).json()
    assert out["debug"]["stage"] == 1  # the persisted stage wins over the caller's


def test_cleanup_job_and_block_limit(
    write_env: EnvWriter, shard_dsn: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from persona_agent.db import PersonaStore
    from persona_agent.state import TempBlock
    from unde_common.db import create_async_pool

    now = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
    user, sleeper = uid(), uid()

    async def add() -> int:
        pool = create_async_pool(shard_dsn, app_name="t")
        await pool.open(wait=True)
        try:
            store = PersonaStore(pool)
            blocks = [TempBlock(f"k{i}", now + timedelta(hours=i + 1), "test") for i in range(25)]
            await store.add_blocks(uuid.UUID(user), blocks, now, timeout_s=5)
            state = await store.load(uuid.UUID(user), now, timeout_s=5)
            return len(state.temp_blocks)
        finally:
            await pool.close()

    assert asyncio.run(add()) == 20
    with psycopg.connect(shard_dsn) as conn:
        conn.execute(
            "INSERT INTO persona_temp_blocks (user_id, key, until, reason) VALUES (%s, 'humor', %s, 'old')",
            (sleeper, now - timedelta(hours=1)),
        )
        conn.execute(
            "INSERT INTO signal_daily_deltas (user_id, field, date, total_delta)"
            " VALUES (%s, 'warmth', %s, 0.1), (%s, 'warmth', %s, 0.1)",
            (sleeper, (now - timedelta(days=10)).date(), sleeper, now.date()),
        )
        conn.execute(
            "INSERT INTO relationship_stage (user_id, stage, stage_updated_at, last_active_at)"
            " VALUES (%s, 2, %s, %s)",
            (sleeper, now - timedelta(days=200), now - timedelta(days=70)),
        )
    write_env({"SHARD_0_DB_URL": shard_dsn, "SHARD_ROUTING_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/12"})
    assert cleanup_main(["cleanup", "--now", now.isoformat()]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["job"] == "persona_cleanup"
    assert report["expired_blocks"] >= 1 and report["old_deltas"] >= 1 and report["downgraded"] >= 1
    with psycopg.connect(shard_dsn) as conn:
        assert conn.execute(
            "SELECT stage FROM relationship_stage WHERE user_id = %s", (sleeper,)
        ).fetchone() == (1,)
        assert conn.execute(
            "SELECT count(*) FROM signal_daily_deltas WHERE user_id = %s", (sleeper,)
        ).fetchone() == (1,)
        assert conn.execute(
            "SELECT count(*) FROM persona_temp_blocks WHERE user_id = %s", (sleeper,)
        ).fetchone() == (0,)


def test_shard_down_persona_answers_defaults_flush_keeps_signals(write_env: EnvWriter, redis13: str) -> None:
    write_env(
        {
            "SHARD_0_DB_URL": f"postgresql://u:pw@127.0.0.1:{free_port()}/unde_shard",
            "REDIS_URL": redis13,
            "PERSONA_DB_TIMEOUT_S": "0.2",
            "DB_CONNECT_TIMEOUT_S": "1",
        }
    )
    user = uid()
    with service_client(create(PersonaAgentSettings.load())) as c:
        out = c.post("/persona", json={"user_id": user}).json()
        assert out["debug"]["state_source"] == "defaults:shard_unavailable"
        feedback(c, user, "e1", "emoji_mirrored")
        r = c.post("/persona/flush", json={"user_id": user, "exchange_id": "e1"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert redis.Redis.from_url(redis13).hlen(f"persona:buf:{user}:e1") == 1


def test_cache_serves_repeat_requests_and_is_invalidated_by_flush(client: TestClient) -> None:
    user = uid()
    assert client.post("/persona", json={"user_id": user}).json()["debug"]["state_source"] == "shard"
    assert client.post("/persona", json={"user_id": user}).json()["debug"]["state_source"] == "cache"
    feedback(client, user, "e", "formality_up")
    flush(client, user, "e")
    out = client.post("/persona", json={"user_id": user}).json()
    assert out["debug"]["state_source"] == "cache"  # refreshed by the flush itself
    assert out["persona_directive"]["blocks"]["style"]["values"]["formality"] == pytest.approx(0.56)
    metrics = client.get("/metrics").text
    assert 'persona_agent_flushes_total{outcome="applied"}' in metrics
