"""ShardRouter against a real Redis (routing cache, DB 12) and two real PostgreSQL servers standing
in for a shard's primary before and after a failover: the entry written the way the Patroni
routing callback writes it moves the pool, a missing entry falls back to the configured DSN, an
unreadable Redis keeps the last target; plus hash(user_id) % N and routing_table assignments."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from psycopg.conninfo import conninfo_to_dict

from unde_common.db import PoolConfig, create_async_pool
from unde_common.shard_router import (
    RoutingEntry,
    ShardRouter,
    retarget,
    routing_table_lookup,
    shard_of,
)
from unde_testkit.testing import PostgresHandle, free_port, postgres_server

pytestmark = pytest.mark.timeout(120)
CONFIG = PoolConfig(min_size=0, max_size=2, timeout_s=5.0, connect_timeout_s=2)


@pytest.fixture(scope="module")
def pg_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    """A second server: the shard's other Patroni member."""
    with postgres_server(Path(tmp_path_factory.mktemp("pg-b")) / "data") as handle:
        yield handle


def address(handle: PostgresHandle) -> tuple[str, int]:
    with psycopg.connect(handle.dsn) as conn:
        row = conn.execute("SHOW port").fetchone()
    assert row is not None
    return str(conninfo_to_dict(handle.dsn)["host"]), int(row[0])


def write_entry(r: redis.Redis, index: int, host: str, port: int, timeline: int, member: str) -> None:
    """The fields roles/patroni's patroni-routing writes (HSET after its timeline compare-and-set)."""
    r.hset(
        f"shard:{index}",
        mapping={
            "host": host,
            "port": port,
            "member": member,
            "timeline": timeline,
            "updated_at": int(time.time()),
            "pgbouncer_port": 0,
            "sysid": "7300000000000000001",
        },
    )


async def data_directory(router: ShardRouter, index: int = 0) -> str:
    pool = await router.pool(index)
    async with pool.connection(timeout=5) as conn:
        cur = await conn.execute("SHOW data_directory")
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


def test_shard_of_is_the_uuid_modulo_n() -> None:
    users = [uuid.uuid4() for _ in range(2000)]
    assert all(shard_of(u, 1) == 0 for u in users)
    counts = [sum(1 for u in users if shard_of(u, 4) == i) for i in range(4)]
    assert all(400 < c < 600 for c in counts), counts
    assert shard_of(uuid.UUID(int=10), 4) == 2
    with pytest.raises(ValueError, match="shard_count"):
        shard_of(users[0], 0)


def test_routing_entry_parsing() -> None:
    raw = {
        b"host": b"10.1.1.10",
        b"port": b"5432",
        b"pgbouncer_port": b"6432",
        b"member": b"r0",
        b"timeline": b"3",
    }
    entry = RoutingEntry.parse(raw)
    assert entry == RoutingEntry("10.1.1.10", 5432, 6432, "r0", 3, 0) and entry.target_port == 6432
    assert RoutingEntry.parse({"host": "h", "port": "5432", "pgbouncer_port": "0"}).target_port == 5432  # type: ignore[union-attr]
    assert RoutingEntry.parse({}) is None
    with pytest.raises(ValueError, match="port is not an integer"):
        RoutingEntry.parse({"host": "h", "port": "x"})
    with pytest.raises(ValueError, match="no host"):
        RoutingEntry.parse({"port": "5432"})
    dsn = retarget("postgresql://app:pw@localhost:6432/unde_shard?sslmode=disable", "10.1.1.10", 5432)
    assert conninfo_to_dict(dsn) == {
        "user": "app",
        "password": "pw",
        "dbname": "unde_shard",
        "host": "10.1.1.10",
        "port": "5432",
        "sslmode": "disable",
    }


def test_router_follows_the_routing_entry(pg: PostgresHandle, pg_b: PostgresHandle, redis_url: str) -> None:
    routing_url = redis_url.rsplit("/", 1)[0] + "/12"
    sync = redis.Redis.from_url(routing_url)
    sync.delete("shard:0")
    host_b, port_b = address(pg_b)
    host_a, port_a = address(pg)

    async def run() -> None:
        client = aioredis.Redis.from_url(routing_url)
        # server B is the shard's other member (what the role renders from the inventory)
        members = {0: [address(pg_b)]}
        router = ShardRouter("test", client, {0: pg.dsn}, pool_config=CONFIG, refresh_s=0.2, members=members)
        try:
            # no entry: the configured DSN (server A)
            assert await data_directory(router) == str(pg.pgdata)
            assert router.describe(0)["source"] == "configured"
            # failover: the routing callback names server B with a higher timeline
            write_entry(sync, 0, host_b, port_b, 2, "shard-replica-0")
            deadline = time.monotonic() + 5
            while await data_directory(router) != str(pg_b.pgdata):
                assert time.monotonic() < deadline, "the router never moved to the new primary"
                await asyncio.sleep(0.05)
            assert router.switches == 1
            assert router.describe(0) | {"target": None} == {
                "shard": 0,
                "target": None,
                "source": "routing",
                "member": "shard-replica-0",
                "timeline": 2,
            }
            # switchback, seen at once after invalidate() (what a caller does on a connection error)
            write_entry(sync, 0, host_a, port_a, 3, "local-shard-0")
            router.invalidate(0)
            assert await data_directory(router) == str(pg.pgdata)
            # Redis unreachable: the last known target stays
            router.routing = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/12")
            write_entry(sync, 0, host_b, port_b, 4, "shard-replica-0")
            router.invalidate(0)
            assert await data_directory(router) == str(pg.pgdata)
            # entry deleted: back to the configured DSN
            router.routing = client
            sync.delete("shard:0")
            router.invalidate(0)
            assert (
                await data_directory(router) == str(pg.pgdata)
                and router.describe(0)["source"] == "configured"
            )
            checks = router.checks(timeout_s=5)
            assert list(checks) == ["shard_0_db"]
            await checks["shard_0_db"]()
        finally:
            sync.delete("shard:0")
            await router.close()
            await client.aclose()

    asyncio.run(run())


def test_routing_table_assignment_wins_over_the_hash(
    pg: PostgresHandle, pg_b: PostgresHandle, redis_url: str
) -> None:
    main_dsn = pg.create_database("router_main")
    with psycopg.connect(main_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE routing_table (user_id uuid PRIMARY KEY, shard_index integer NOT NULL)")
        moved = uuid.UUID(int=2)  # hash says shard 0 of 2
        conn.execute("INSERT INTO routing_table VALUES (%s, 1), (%s, 7)", (moved, uuid.UUID(int=4)))
    routing_url = redis_url.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(routing_url).delete("shard:0", "shard:1")

    async def run() -> None:
        main_pool = create_async_pool(main_dsn, app_name="test", config=CONFIG)
        await main_pool.open()
        client = aioredis.Redis.from_url(routing_url)
        router = ShardRouter(
            "test",
            client,
            {0: pg.dsn, 1: pg_b.dsn},
            pool_config=CONFIG,
            assignment=routing_table_lookup(main_pool),
        )
        try:
            assert await router.shard_for(moved) == 1
            assert await router.shard_for(uuid.UUID(int=3)) == 1  # no row: 3 % 2
            assert await router.shard_for(uuid.UUID(int=6)) == 0
            pool = await router.pool_for_user(moved)
            async with pool.connection() as conn:
                row = await (await conn.execute("SHOW data_directory")).fetchone()
            assert row is not None and row[0] == str(pg_b.pgdata)
            with pytest.raises(LookupError, match="shard 7, which is not configured"):
                await router.shard_for(uuid.UUID(int=4))
            await main_pool.close()  # the assignment store down: the hash still routes
            assert await router.shard_for(moved) == 0
        finally:
            await router.close()
            await client.aclose()

    asyncio.run(run())


def test_template_shard_needs_its_entry(pg: PostgresHandle, pg_b: PostgresHandle, redis_url: str) -> None:
    routing_url = redis_url.rsplit("/", 1)[0] + "/12"
    sync = redis.Redis.from_url(routing_url)
    sync.delete("shard:1")
    with pytest.raises(ValueError, match=r"no configured DSN for shard\(s\) \[1\]"):
        ShardRouter("test", None, {0: pg.dsn}, shard_count=2)

    async def run() -> None:
        client = aioredis.Redis.from_url(routing_url)
        router = ShardRouter(
            "test",
            client,
            {0: pg.dsn},
            shard_count=2,
            template=pg.dsn,
            pool_config=CONFIG,
            members={1: [address(pg_b)]},
        )
        try:
            with pytest.raises(LookupError, match="shard 1 has no routing entry"):
                await router.pool(1)
            write_entry(sync, 1, *address(pg_b), 1, "local-shard-1")
            router.invalidate(1)
            assert await data_directory(router, 1) == str(pg_b.pgdata)
        finally:
            sync.delete("shard:1")
            await router.close()
            await client.aclose()

    asyncio.run(run())
