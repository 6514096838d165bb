"""A poisoned routing entry (someone with the local-redis password writes ``shard:0`` naming their
own server) is refused and logged, and nothing connects to that server: a plain TCP listener on
loopback records every connection and byte. A valid entry still routes. And should an address on
the allow-list ever be taken over, a server there asking for a cleartext or MD5 password receives
no password: the client requires SCRAM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Literal

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from unde_common.db import PoolConfig, connect
from unde_common.shard_router import ShardRouter, parse_members
from unde_testkit.testing import PostgresHandle

pytestmark = pytest.mark.timeout(120)
CONFIG = PoolConfig(min_size=0, max_size=2, timeout_s=5.0, connect_timeout_s=2)
SECRET = "persona-rw-secret-7f3a"
SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


class FakePostgres:
    """A TCP listener on 127.0.0.1 that records whether anything connected and what it sent.

    ``auth``: None = just record; "cleartext" / "md5" = answer like a PostgreSQL server asking for
    that kind of password (decline TLS/GSS, read the startup packet, send the auth request)."""

    def __init__(self, auth: Literal["cleartext", "md5"] | None = None) -> None:
        self.auth = auth
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(2.0)
                with contextlib.suppress(OSError):
                    self._talk(conn)

    def _read_packet(self, conn: socket.socket) -> bytes:
        head = conn.recv(4, socket.MSG_WAITALL)
        self.received += head
        (length,) = struct.unpack("!I", head)
        body = conn.recv(length - 4, socket.MSG_WAITALL)
        self.received += body
        return body

    def _talk(self, conn: socket.socket) -> None:
        if self.auth is None:
            while data := conn.recv(4096):
                self.received += data
            return
        body = self._read_packet(conn)
        while struct.unpack("!I", body[:4])[0] in (SSL_REQUEST, GSSENC_REQUEST):
            conn.sendall(b"N")
            body = self._read_packet(conn)
        if self.auth == "cleartext":
            conn.sendall(b"R" + struct.pack("!II", 8, 3))
        else:
            conn.sendall(b"R" + struct.pack("!II", 12, 5) + b"salt")
        while data := conn.recv(4096):  # whatever the client answers (a password message 'p' ...)
            self.received += data

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def fake() -> Iterator[FakePostgres]:
    server = FakePostgres()
    yield server
    server.close()


def address(handle: PostgresHandle) -> tuple[str, int]:
    with psycopg.connect(handle.dsn) as conn:
        row = conn.execute("SHOW port").fetchone()
    assert row is not None
    return str(conninfo_to_dict(handle.dsn)["host"]), int(row[0])


def entry(r: redis.Redis, host: str, port: int, timeline: int, member: str = "evil") -> None:
    r.hset(
        "shard:0",
        mapping={
            "host": host,
            "port": port,
            "member": member,
            "timeline": timeline,
            "updated_at": int(time.time()),
            "pgbouncer_port": 0,
        },
    )


async def data_directory(router: ShardRouter) -> str:
    pool = await router.pool(0)
    async with pool.connection(timeout=5) as conn:
        row = await (await conn.execute("SHOW data_directory")).fetchone()
    assert row is not None
    return str(row[0])


def test_parse_members() -> None:
    assert parse_members(["0@10.2.0.10:5432", "0@10.2.0.10:6432", "1@10.1.1.11:5432", ""]) == {
        0: frozenset({("10.2.0.10", 5432), ("10.2.0.10", 6432)}),
        1: frozenset({("10.1.1.11", 5432)}),
    }
    for bad in ("10.2.0.10:5432", "x@10.2.0.10:5432", "0@10.2.0.10", "0@10.2.0.10:99999", "0@:5432"):
        with pytest.raises(ValueError, match="must be"):
            parse_members([bad])


def test_poisoned_entry_is_refused_logged_and_never_connected(
    pg: PostgresHandle, redis_url: str, fake: FakePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    routing_url = redis_url.rsplit("/", 1)[0] + "/12"
    sync = redis.Redis.from_url(routing_url)
    host, port = address(pg)
    # the configured DSN carries a password, as production's does (pgserver's socket is trust)
    configured = make_conninfo(pg.dsn, user="postgres", password=SECRET)
    members = parse_members([f"0@{host}:{port}"])

    async def run() -> None:
        client = aioredis.Redis.from_url(routing_url)
        router = ShardRouter(
            "test", client, {0: configured}, pool_config=CONFIG, refresh_s=0.05, members=members
        )
        try:
            # poisoned before anything was known: the configured DSN, not the fake server
            entry(sync, "127.0.0.1", fake.port, 99)
            with caplog.at_level(logging.ERROR, logger="unde_common.shard_router"):
                assert await data_directory(router) == str(pg.pgdata)
            assert router.describe(0)["source"] == "configured" and router.refused == 1
            # a valid entry (a member's address) routes
            entry(sync, host, port, 2, "local-shard-0")
            router.invalidate(0)
            assert await data_directory(router) == str(pg.pgdata)
            assert router.describe(0) | {"target": None} == {
                "shard": 0,
                "target": None,
                "source": "routing",
                "member": "local-shard-0",
                "timeline": 2,
            }
            # poisoned again (PgBouncer port variant): the current target stays
            sync.hset("shard:0", mapping={"host": "127.0.0.1", "port": port, "pgbouncer_port": fake.port})
            for _ in range(5):
                router.invalidate(0)
                assert await data_directory(router) == str(pg.pgdata)
                await asyncio.sleep(0.06)
            assert router.refused >= 6 and router.describe(0)["member"] == "local-shard-0"
        finally:
            sync.delete("shard:0")
            await router.close()
            await client.aclose()

    asyncio.run(run())
    time.sleep(0.3)  # a connection attempt in the background would have arrived by now
    assert fake.connections == 0 and bytes(fake.received) == b""
    refusals = [r for r in caplog.records if "not a member of the shard; refused" in r.getMessage()]
    assert refusals and f"127.0.0.1:{fake.port}" in refusals[0].getMessage()
    assert all(SECRET not in r.getMessage() and SECRET not in str(r.__dict__) for r in caplog.records)


@pytest.mark.parametrize("auth", ["cleartext", "md5"])
def test_a_server_asking_for_a_password_gets_none(auth: Literal["cleartext", "md5"]) -> None:
    """Second line of defence: even at an allowed address, a server that is not a SCRAM server
    never sees the password (libpq's require_auth refuses the request)."""
    server = FakePostgres(auth)
    try:
        dsn = f"postgresql://persona_rw:{SECRET}@127.0.0.1:{server.port}/unde_shard"
        with pytest.raises(psycopg.OperationalError, match="authentication method requirement"):
            connect(dsn, app_name="test", connect_timeout_s=2)
        time.sleep(0.2)
        assert server.connections >= 1
        assert b"persona_rw" in server.received  # the startup packet arrived ...
        assert SECRET.encode() not in server.received  # ... the password never did
        assert b"md5" not in server.received  # nor its MD5 hash
    finally:
        server.close()
