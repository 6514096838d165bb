"""Persona state on the user's shard, found through the shard routing cache (local-redis DB 12,
hash ``shard:0`` as the Patroni routing callback writes it): two real PostgreSQL servers with the
shard schema stand in for local-shard-0 and shard-replica-0. A failover (the entry names the other
server) moves the agent's reads and writes there; a deleted entry brings it back to the configured
DSN."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from persona_agent.app import create
from persona_agent.settings import PersonaAgentSettings
from unde_testkit.service_auth import service_client
from unde_testkit.testing import PostgresHandle, postgres_server

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def replica_dsn(
    tmp_path_factory: pytest.TempPathFactory, migrate_db: Callable[[PostgresHandle, str, str], str]
) -> Iterator[str]:
    """shard-replica-0 after its promotion: a second server with the same database name."""
    with postgres_server(Path(tmp_path_factory.mktemp("shard-replica")) / "data") as handle:
        yield migrate_db(handle, "persona_shard", "unde_shard")


def address(dsn: str) -> tuple[str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW port").fetchone()
    assert row is not None
    return str(conninfo_to_dict(dsn)["host"]), int(row[0])


def exchanges(dsn: str, user: str) -> int | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT total_exchanges FROM relationship_stage WHERE user_id = %s", (user,)
        ).fetchone()
    return None if row is None else int(row[0])


def learn(c: TestClient, user: str, exchange: str) -> None:
    body = {
        "user_id": user,
        "signal_id": str(uuid.uuid4()),
        "exchange_id": exchange,
        "signal_type": "formality_up",
    }
    assert c.post("/persona/feedback", json=body).status_code == 200
    r = c.post("/persona/flush", json={"user_id": user, "exchange_id": exchange})
    assert r.status_code == 200, r.text


def known(c: TestClient, user: str) -> bool:
    r = c.get("/persona/profile", params={"user_id": user})
    assert r.status_code == 200, r.text
    return bool(r.json()["known"])


def test_failover_moves_persona_state_to_the_new_primary(
    shard_dsn: str, replica_dsn: str, redis_url: str
) -> None:
    routing = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/12")
    routing.delete("shard:0")
    settings = PersonaAgentSettings.load(
        shard_0_db_url=shard_dsn,
        redis_url=redis_url.rsplit("/", 1)[0] + "/13",
        shard_routing_redis_url=redis_url.rsplit("/", 1)[0] + "/12",
        shard_routing_refresh_s=0.2,
        # the replica is the shard's other member (the role renders SHARD_MEMBERS from the inventory)
        shard_members="0@{}:{}".format(*address(replica_dsn)),
    )
    user = str(uuid.uuid4())
    try:
        with service_client(create(settings)) as c:
            learn(c, user, "e1")  # no routing entry: the configured shard (local-shard-0)
            assert exchanges(shard_dsn, user) == 1 and exchanges(replica_dsn, user) is None
            host, port = address(replica_dsn)
            routing.hset(
                "shard:0",
                mapping={
                    "host": host,
                    "port": port,
                    "member": "shard-replica-0",
                    "timeline": 2,
                    "updated_at": int(time.time()),
                    "pgbouncer_port": 0,
                    "sysid": "1",
                },
            )
            deadline = time.monotonic() + 5
            while known(c, user):  # the replica has never seen this user
                assert time.monotonic() < deadline, "the agent stayed on the old primary"
                time.sleep(0.05)
            learn(c, user, "e2")
            assert exchanges(replica_dsn, user) == 1 and exchanges(shard_dsn, user) == 1
            health = c.get("/health").json()
            assert health["checks"]["shard_0_db"]["status"] == "ok"
            assert c.app.state.router.describe(0)["member"] == "shard-replica-0"  # type: ignore[attr-defined]
            # the entry disappears (flushed Redis): back to the configured DSN until it is rewritten
            routing.delete("shard:0")
            router = c.app.state.router  # type: ignore[attr-defined]
            deadline = time.monotonic() + 5
            while router.describe(0)["source"] != "configured":
                assert time.monotonic() < deadline, "the agent did not fall back to the configured DSN"
                known(c, user)  # any shard access re-reads the entry once refresh_s has passed
                time.sleep(0.05)
            learn(c, user, "e3")
            assert exchanges(shard_dsn, user) == 2 and exchanges(replica_dsn, user) == 1
    finally:
        routing.delete("shard:0")
