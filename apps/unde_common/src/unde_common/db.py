"""PostgreSQL connection pools (psycopg 3 + psycopg_pool).

The databases sit behind PgBouncer in transaction mode, so by default server-side prepared
statements are off (``prepare_threshold=None``); every connection carries
``application_name=<app>`` so ``pg_stat_activity`` and PgBouncer's SHOW CLIENTS tell the apps apart.

**Authentication and TLS, set here for every connection and pool.** Over TCP the client requires
SCRAM (``require_auth=scram-sha-256``, libpq ≥ 16): a server (or anything listening where a DSN or a
routing entry points) that asks for a cleartext or MD5 password is refused before the password
leaves the process. Over a Unix socket (local peer/trust, no password on the wire) the client
accepts SCRAM or no authentication exchange at all (``scram-sha-256,none``), never a password.
``sslmode`` / ``sslrootcert`` come from the settings (``DB_SSLMODE``, ``DB_SSLROOTCERT``):
``verify-full`` with the internal CA where the hop crosses sites, ``prefer`` on loopback dev.

**Dead connections.** Pools check a connection when it is handed out
(``check=ConnectionPool.check_connection``): after a PostgreSQL restart the next request gets a
fresh connection instead of the dead one.

    pool = create_pool(settings.staging_db_url, app_name="scraper", config=PoolConfig.from_settings(settings))
    with pool.connection() as conn:
        conn.execute("SELECT 1")
    check(pool)          # raises DatabaseUnavailableError when the database cannot answer
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, TupleRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from pydantic import SecretStr

from unde_common.settings import DbPoolSettings

__all__ = [
    "AsyncPools",
    "DatabaseUnavailableError",
    "PoolConfig",
    "acheck",
    "check",
    "connect",
    "create_async_pool",
    "create_pool",
    "describe_dsn",
    "security_params",
]


class DatabaseUnavailableError(RuntimeError):
    """The health query failed; the message names the pool and the target without the password."""


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Pool sizing and timeouts (see :class:`unde_common.settings.DbPoolSettings`)."""

    min_size: int = 1
    max_size: int = 10
    timeout_s: float = 10.0
    connect_timeout_s: int = 5
    max_idle_s: float = 300.0
    max_lifetime_s: float = 3600.0
    prepared_statements: bool = False
    #: libpq sslmode of every connection (``verify-full`` where the hop crosses sites)
    sslmode: str = "prefer"
    #: CA bundle verifying the server certificate (verify-ca / verify-full); "" = libpq's default
    sslrootcert: str = ""

    @classmethod
    def from_settings(cls, settings: DbPoolSettings) -> PoolConfig:
        return cls(
            min_size=settings.db_pool_min_size,
            max_size=max(settings.db_pool_max_size, settings.db_pool_min_size, 1),
            timeout_s=settings.db_pool_timeout_s,
            connect_timeout_s=settings.db_connect_timeout_s,
            prepared_statements=settings.db_prepared_statements,
            sslmode=settings.db_sslmode,
            sslrootcert=settings.db_sslrootcert,
        )


def _raw(dsn: SecretStr | str) -> str:
    return dsn.get_secret_value() if isinstance(dsn, SecretStr) else dsn


def describe_dsn(dsn: SecretStr | str) -> str:
    """``postgresql://user@host:port/db`` — the DSN without its password, for logs and errors."""
    raw = _raw(dsn)
    if "://" not in raw:
        return "<conninfo>"
    parts = urlsplit(raw)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{port}{parts.path}"


#: ``require_auth`` over TCP: SCRAM only, so no password is ever sent in clear or as MD5.
REQUIRE_AUTH_TCP = "scram-sha-256"
#: ``require_auth`` over a Unix socket: SCRAM, or local peer/trust that asks for no password.
REQUIRE_AUTH_SOCKET = "scram-sha-256,none"


def _is_socket(host: str) -> bool:
    return host.startswith(("/", "@"))


def security_params(dsn: SecretStr | str, config: PoolConfig | None = None) -> dict[str, str]:
    """The connection parameters that every connection gets on top of its DSN: ``require_auth``
    (SCRAM; see the module docstring), ``sslmode`` and ``sslrootcert`` from the settings. They win
    over the same keys in the DSN: a DSN cannot weaken them."""
    cfg = config or PoolConfig()
    try:
        hosts = str(conninfo_to_dict(_raw(dsn)).get("host") or "").split(",")
    except psycopg.ProgrammingError:
        hosts = [""]
    # no host at all: libpq's default Unix socket
    socket_only = all(not h or _is_socket(h) for h in hosts)
    params = {
        "require_auth": REQUIRE_AUTH_SOCKET if socket_only else REQUIRE_AUTH_TCP,
        "sslmode": cfg.sslmode,
    }
    if cfg.sslrootcert:
        params["sslrootcert"] = cfg.sslrootcert
    return params


def _connection_kwargs(dsn: SecretStr | str, app_name: str, config: PoolConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "application_name": app_name,
        "connect_timeout": config.connect_timeout_s,
        "autocommit": False,
        **security_params(dsn, config),
    }
    if not config.prepared_statements:
        kwargs["prepare_threshold"] = None
    return kwargs


def connect(
    dsn: SecretStr | str, *, app_name: str, connect_timeout_s: int = 5, config: PoolConfig | None = None
) -> Connection[DictRow]:
    """One connection with dict rows, for a worker task: autocommit (the task opens an explicit
    transaction for each unit of work), no server-side prepared statements (PgBouncer); SCRAM and
    TLS as for the pools (``config`` gives sslmode / sslrootcert)."""
    return psycopg.connect(
        make_conninfo(_raw(dsn), **security_params(dsn, config)),
        autocommit=True,
        row_factory=dict_row,
        prepare_threshold=None,
        connect_timeout=connect_timeout_s,
        application_name=app_name,
    )


def create_pool(
    dsn: SecretStr | str,
    *,
    app_name: str,
    name: str | None = None,
    config: PoolConfig | None = None,
    open: bool = True,
    wait: bool = False,
) -> ConnectionPool[Connection[TupleRow]]:
    """A synchronous pool. ``open=True`` starts it (``wait=True`` blocks until min_size connect)."""
    cfg = config or PoolConfig()
    pool: ConnectionPool[Connection[TupleRow]] = ConnectionPool(
        _raw(dsn),
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        timeout=cfg.timeout_s,
        max_idle=cfg.max_idle_s,
        max_lifetime=cfg.max_lifetime_s,
        kwargs=_connection_kwargs(dsn, app_name, cfg),
        name=name or f"{app_name}:{describe_dsn(dsn)}",
        check=ConnectionPool.check_connection,
        open=False,
    )
    if open:
        pool.open(wait=wait, timeout=cfg.timeout_s)
    return pool


def create_async_pool(
    dsn: SecretStr | str,
    *,
    app_name: str,
    name: str | None = None,
    config: PoolConfig | None = None,
) -> AsyncConnectionPool[AsyncConnection[TupleRow]]:
    """An asyncio pool, not yet open: ``await pool.open()`` in the app's lifespan, ``await pool.close()``."""
    cfg = config or PoolConfig()
    return AsyncConnectionPool(
        _raw(dsn),
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        timeout=cfg.timeout_s,
        max_idle=cfg.max_idle_s,
        max_lifetime=cfg.max_lifetime_s,
        kwargs=_connection_kwargs(dsn, app_name, cfg),
        name=name or f"{app_name}:{describe_dsn(dsn)}",
        check=AsyncConnectionPool.check_connection,
        open=False,
    )


def check(pool: ConnectionPool[Any], *, timeout_s: float = 2.0) -> None:
    """Run ``SELECT 1`` on a pooled connection; raise DatabaseUnavailableError on any failure."""
    try:
        with pool.connection(timeout=timeout_s) as conn:
            row = conn.execute("SELECT 1").fetchone()
    except Exception as exc:
        raise DatabaseUnavailableError(f"{pool.name}: {exc.__class__.__name__}: {exc}") from exc
    if row is None or row[0] != 1:
        raise DatabaseUnavailableError(f"{pool.name}: SELECT 1 returned {row!r}")


async def acheck(pool: AsyncConnectionPool[Any], *, timeout_s: float = 2.0) -> None:
    """Async :func:`check`."""
    try:
        async with pool.connection(timeout=timeout_s) as conn:
            cur = await conn.execute("SELECT 1")
            row = await cur.fetchone()
    except Exception as exc:
        raise DatabaseUnavailableError(f"{pool.name}: {exc.__class__.__name__}: {exc}") from exc
    if row is None or row[0] != 1:
        raise DatabaseUnavailableError(f"{pool.name}: SELECT 1 returned {row!r}")


class AsyncPools:
    """The named async pools of an HTTP service, with their health checks and a lifespan.

        pools = AsyncPools("ximilar_gw", {"production_db": settings.production_db_url}, config)
        app = create_app(..., checks=pools.checks(), lifespan=pools.lifespan)
        async with pools["production_db"].connection() as conn: ...

    The lifespan opens the pools without waiting, so the service starts (and /health reports the
    database as failing) while a database is down; the pools keep reconnecting in the background.
    """

    def __init__(self, app_name: str, dsns: Mapping[str, SecretStr | str], config: PoolConfig | None = None):
        self.pools: dict[str, AsyncConnectionPool[AsyncConnection[TupleRow]]] = {
            name: create_async_pool(dsn, app_name=app_name, name=f"{app_name}:{name}", config=config)
            for name, dsn in dsns.items()
        }

    def __getitem__(self, name: str) -> AsyncConnectionPool[AsyncConnection[TupleRow]]:
        return self.pools[name]

    async def open(self) -> None:
        for pool in self.pools.values():
            await pool.open(wait=False)

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()

    def checks(self, timeout_s: float = 2.0) -> dict[str, Callable[[], Awaitable[None]]]:
        """One ``SELECT 1`` check per pool, named like the pool."""

        def make(pool: AsyncConnectionPool[Any]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await acheck(pool, timeout_s=timeout_s)

            return run

        return {name: make(pool) for name, pool in self.pools.items()}

    @asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        await self.open()
        try:
            yield
        finally:
            await self.close()
