"""unde_common.db against a private real PostgreSQL 16 listening on loopback TCP with one role per
authentication method (pg_hba.conf): the client requires SCRAM, so a server asking for an MD5 or a
cleartext password — or accepting anyone without authentication — is refused before a password is
sent; SCRAM works; the sslmode setting reaches libpq; and after the server restarts, the pools hand
out a working connection on the very next checkout."""

from __future__ import annotations

import asyncio
import atexit
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from unde_common.db import (
    PoolConfig,
    check,
    connect,
    create_async_pool,
    create_pool,
    security_params,
)
from unde_testkit.testing import free_port

pytestmark = pytest.mark.timeout(120)

#: a password with every character that needs URL encoding in a DSN
PASSWORD = "p/w@r:d%2F#?&x"

HBA = """\
local all md5_user md5
local all all trust
host all md5_user 127.0.0.1/32 md5
host all clear_user 127.0.0.1/32 password
host all trust_user 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@dataclass
class Cluster:
    pgdata: Path
    socket_dir: Path
    port: int
    system_user: str | None

    def dsn(self, user: str, password: str = PASSWORD) -> str:
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/postgres"
        )

    def socket_dsn(self, user: str, password: str = PASSWORD) -> str:
        secret = quote(password, safe="")
        return f"postgresql://{user}:{secret}@/postgres?host={self.socket_dir}&port={self.port}"

    def pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        argv = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-w", "-D", str(self.pgdata), *args]
        subprocess.run(argv, check=True, user=self.system_user, timeout=30, capture_output=True)

    def start(self) -> None:
        self.pg_ctl(
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir}",
            "-l",
            str(self.pgdata / "private.log"),
            "start",
        )

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "stop")
        self.start()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """pgserver initialises the data directory; then it runs with TCP on loopback and our pg_hba."""
    from pgserver.postgres_server import get_server

    pgdata = Path(tmp_path_factory.mktemp("pg-auth")) / "data"
    pgdata.mkdir(parents=True)
    server = get_server(pgdata, cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("SET password_encryption = 'md5'")
        conn.execute(f"CREATE ROLE md5_user LOGIN PASSWORD '{PASSWORD}'")
        conn.execute("SET password_encryption = 'scram-sha-256'")
        for role in ("scram_user", "clear_user", "trust_user"):
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    (pgdata / "pg_hba.conf").write_text(HBA)
    server.cleanup()  # stops the socket-only server pgserver started
    atexit.unregister(server._cleanup)  # already done; at exit it would only log to closed streams
    handle = Cluster(pgdata, pgdata, free_port(), server.system_user)
    handle.start()
    try:
        yield handle
    finally:
        handle.pg_ctl("-m", "immediate", "stop")


def test_scram_is_accepted(cluster: Cluster) -> None:
    with connect(cluster.dsn("scram_user"), app_name="test") as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row == {"current_user": "scram_user"}


@pytest.mark.parametrize("user", ["md5_user", "clear_user", "trust_user"])
def test_any_other_method_is_refused(cluster: Cluster, user: str) -> None:
    """md5 / cleartext password / no authentication at all over TCP: refused by the client.
    (Plain libpq connects to all three: the server is configured to allow them.)"""
    with psycopg.connect(cluster.dsn(user), connect_timeout=5):
        pass
    with pytest.raises(psycopg.OperationalError, match="authentication method requirement"):
        connect(cluster.dsn(user), app_name="test")
    pool = create_pool(cluster.dsn(user), app_name="test", config=PoolConfig(min_size=0, timeout_s=2))
    try:
        with pytest.raises(Exception, match=r"authentication method requirement|couldn't get a connection"):
            check(pool, timeout_s=2)
    finally:
        pool.close()


def test_unix_socket_allows_peer_trust_but_never_a_password(cluster: Cluster) -> None:
    """Over the local socket, trust (no password on the wire) is fine; an MD5 prompt is not."""
    assert security_params(cluster.socket_dsn("x"))["require_auth"] == "scram-sha-256,none"
    assert security_params(cluster.dsn("x"))["require_auth"] == "scram-sha-256"
    with connect(cluster.socket_dsn("clear_user"), app_name="test") as conn:
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    with pytest.raises(psycopg.OperationalError, match="authentication method requirement"):
        connect(cluster.socket_dsn("md5_user"), app_name="test")


def test_a_dsn_cannot_weaken_the_requirement(cluster: Cluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="authentication method requirement"):
        connect(cluster.dsn("md5_user") + "?require_auth=md5", app_name="test")


def test_sslmode_setting_reaches_libpq(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The test server has no TLS: verify-full must refuse it (where a hop crosses sites, the
    connection fails rather than fall back to cleartext); the default prefer connects."""
    from unde_common.settings import DbPoolSettings

    monkeypatch.setenv("DB_SSLMODE", "verify-full")
    monkeypatch.setenv("DB_SSLROOTCERT", str(cluster.pgdata / "no-such-ca.crt"))
    (tmp_path / ".env").write_text("")
    monkeypatch.setenv("UNDE_ENV_FILE", str(tmp_path / ".env"))
    config = PoolConfig.from_settings(DbPoolSettings.load())
    assert (config.sslmode, config.sslrootcert) == ("verify-full", str(cluster.pgdata / "no-such-ca.crt"))
    with pytest.raises(psycopg.OperationalError, match=r"SSL|root certificate"):
        connect(cluster.dsn("scram_user"), app_name="test", config=config)
    with connect(cluster.dsn("scram_user"), app_name="test", config=PoolConfig()) as conn:
        assert conn.info.get_parameters()["application_name"] == "test"


def test_pools_serve_the_next_request_after_a_restart(cluster: Cluster) -> None:
    config = PoolConfig(min_size=2, max_size=2, timeout_s=10, connect_timeout_s=5)
    pool = create_pool(cluster.dsn("scram_user"), app_name="test", config=config, wait=True)
    apool = create_async_pool(cluster.dsn("scram_user"), app_name="test", config=config)

    async def one() -> int:
        async with apool.connection() as conn:
            row = await (await conn.execute("SELECT 1")).fetchone()
        assert row is not None
        return int(row[0])

    async def run() -> None:
        await apool.open(wait=True)
        try:
            assert await one() == 1
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            cluster.restart()  # every pooled connection is now dead
            # the very next checkout, no retry: a dead connection is never handed out
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            check(pool, timeout_s=5)
            assert await one() == 1
            assert await one() == 1
        finally:
            await apool.close()
            pool.close()

    asyncio.run(run())
