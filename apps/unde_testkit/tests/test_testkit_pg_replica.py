"""unde_testkit.pg_replica: a real primary + streaming standby, a crash of the primary, the promotion,
and the shard router following the routing entry the Patroni callback would write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import redis.asyncio as aioredis

from unde_common.shard_router import ShardRouter, parse_members
from unde_testkit.pg_replica import ReplicatedShard
from unde_testkit.testing_sql import repo_root


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedShard]:
    with ReplicatedShard(tmp_path_factory.mktemp("replica")) as replicated:
        yield replicated


def _insert_conversation(dsn: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO conversations (user_id) VALUES (%s)", (user_id,))
    return user_id


def _has_conversation(dsn: str, user_id: uuid.UUID) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM conversations WHERE user_id = %s", (user_id,)).fetchone() is not None
        )


def test_write_replicates_survives_crash_and_promotion(shard: ReplicatedShard, redis_url: str) -> None:
    expected = sorted(p.name for p in (repo_root() / "files/sql/unde_shard").glob("*.sql"))
    with psycopg.connect(shard.standby_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        applied = [r[0] for r in conn.execute("SELECT filename FROM schema_migrations ORDER BY 1")]
        # a hot standby refuses writes
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO conversations (user_id) VALUES (%s)", (uuid.uuid4(),))
    assert applied == expected

    old_primary, old_standby = shard.primary, shard.standby
    before = shard.routing_entry()
    written = _insert_conversation(shard.primary_dsn)
    shard.wait_replayed()
    assert _has_conversation(shard.standby_dsn, written)

    killed = shard.kill_primary()
    assert killed > 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(shard.dsn(old_primary), connect_timeout=2).close()

    shard.promote()
    assert shard.primary is old_standby
    assert shard.primary_dsn == shard.dsn(old_standby)
    after = shard.routing_entry()
    assert after["port"] == str(old_standby.port) and after["member"] == old_standby.name
    assert int(after["timeline"]) == int(before["timeline"]) + 1
    assert after["sysid"] == before["sysid"] and after["pgbouncer_port"] == "0"

    # the row acknowledged before the crash is on the new primary, which accepts writes
    assert _has_conversation(shard.primary_dsn, written)
    later = _insert_conversation(shard.primary_dsn)
    assert _has_conversation(shard.primary_dsn, later)

    # the shard router follows the routing entry to the new primary (both members allowed)
    routing_url = redis_url.rsplit("/", 1)[0] + "/12"
    template = f"test-replica-{uuid.uuid4().hex[:8]}:{{index}}"
    key = template.format(index=0)
    sync = redis.Redis.from_url(routing_url)

    async def route() -> tuple[int, int]:
        client = aioredis.Redis.from_url(routing_url)
        router = ShardRouter(
            "test_pg_replica",
            client,
            {0: shard.dsn(old_primary)},
            key_template=template,
            members=parse_members(shard.shard_members),
            refresh_s=0.01,
        )
        try:
            sync.hset(key, mapping=dict(after))  # type: ignore[arg-type]
            pool = await router.pool(0)
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT inet_server_port(), pg_is_in_recovery()::int")
                row = await cur.fetchone()
            assert row is not None
            return int(row[0]), int(row[1])
        finally:
            await router.close()
            await client.aclose()

    try:
        assert asyncio.run(route()) == (old_standby.port, 0)
    finally:
        sync.delete(key)
        sync.close()


def test_cut_stream_loses_what_came_after(tmp_path: Path) -> None:
    with ReplicatedShard(tmp_path / "r") as replicated:
        kept = _insert_conversation(replicated.primary_dsn)
        replicated.wait_replayed()
        replicated.cut_stream()
        lost = _insert_conversation(replicated.primary_dsn)
        replicated.kill_primary()
        replicated.promote()
        assert _has_conversation(replicated.primary_dsn, kept)
        assert not _has_conversation(replicated.primary_dsn, lost)


def test_stop_removes_the_data(tmp_path: Path) -> None:
    with ReplicatedShard(tmp_path / "r", schema=None, database="plain") as replicated:
        members = list(replicated.members)
        with psycopg.connect(replicated.primary_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("plain",)
    for member in members:
        assert not member.pgdata.exists()
        assert member.pid() is None
