"""User → shard → the shard's current primary (spec 02 §14 "Шардирование", spec 03 scenario 1).

    router = ShardRouter("persona_agent", routing_redis, {0: settings.shard_0_db_url}, shard_count=1)
    async with router.lifespan(app): ...
    pool = await router.pool_for_user(user_id)      # psycopg AsyncConnectionPool of that primary
    async with pool.connection() as conn: ...

**Which shard.** ``shard_of(user_id, shard_count)``: the spec's ``hash(user_id) % N`` with the
UUID's own 128-bit value as the hash (uniform for v4 UUIDs, identical in every language). When an
assignment lookup is given (``assignment=``, e.g. production ``routing_table`` through
:func:`routing_table_lookup`), a row there wins: users moved by a rebalance keep their shard.

**Which server.** The routing cache on local-redis (DB 12) holds hash ``shard:<n>`` with ``host``,
``port``, ``pgbouncer_port`` (0 = none), ``member``, ``timeline``, ``updated_at``, ``sysid`` —
written by the Patroni routing callback/timer (roles/patroni, README "Routing on promotion").
The router connects to ``host`` and ``pgbouncer_port`` when it is set, else ``port``, keeping the
user, password, database and options of the configured DSN of that shard. The entry is re-read at
most every ``refresh_s`` (and at once after :meth:`ShardRouter.invalidate`, which callers use after
a connection error). When it names another server than the current pool, a new pool is opened
and the old one closed: after a failover the agent follows the new primary within ``refresh_s``.
When the key is missing, the configured DSN is used (shards configured only through ``template``
— same credentials, routed by their entry — then answer LookupError); when Redis cannot be read,
the last known target stays (or the configured DSN before any was known).

**Only the shard's own members.** Whoever can write DB 12 could otherwise point the router at a
server of their choice and collect the shard's password. An entry is followed only when the address
it names (host and the port connected to) is one of the shard's members from the inventory
(``members=``, the app's ``SHARD_MEMBERS`` setting rendered by its role: ``<index>@<host>:<port>``,
parsed by :func:`parse_members`) or the address of the shard's configured DSN. Any other entry is
refused and logged (shard, host, port; never the DSN), no connection is made to it, and the shard
stays on its last target (the configured DSN before any was known); ``refused`` counts them.
Connections also require SCRAM (``unde_common.db``), so a password never crosses in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from psycopg import AsyncConnection, pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from pydantic import Field, SecretStr, field_validator

from unde_common.db import PoolConfig, acheck, create_async_pool, describe_dsn
from unde_common.settings import CommaList, PostgresDsn, RedisDsn, UndeSettings

__all__ = [
    "ROUTING_KEY",
    "RoutingEntry",
    "ShardRouter",
    "ShardRoutingSettings",
    "parse_members",
    "retarget",
    "router_from_settings",
    "routing_table_lookup",
    "shard_of",
]

log = logging.getLogger(__name__)

ROUTING_KEY = "shard:{index}"
Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]
Assignment = Callable[[UUID], Awaitable[int | None]]


def shard_of(user_id: UUID, shard_count: int) -> int:
    """The spec's ``hash(user_id) % N``: the UUID's 128-bit value modulo the number of shards."""
    if shard_count < 1:
        raise ValueError(f"shard_count must be at least 1, got {shard_count}")
    return user_id.int % shard_count


@dataclass(frozen=True, slots=True)
class RoutingEntry:
    """One ``shard:<n>`` hash of the routing cache."""

    host: str
    port: int
    pgbouncer_port: int = 0
    member: str = ""
    timeline: int = 0
    updated_at: int = 0

    @classmethod
    def parse(cls, raw: Mapping[bytes, bytes] | Mapping[str, str] | Mapping[Any, Any]) -> RoutingEntry | None:
        """The entry, or None when the hash is empty; ValueError naming a malformed field."""
        if not raw:
            return None
        d = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        if not d.get("host"):
            raise ValueError("routing entry has no host")

        def num(name: str, default: int | None = None) -> int:
            value = d.get(name)
            if value in (None, ""):
                if default is None:
                    raise ValueError(f"routing entry has no {name}")
                return default
            try:
                return int(str(value))
            except ValueError:
                raise ValueError(f"routing entry field {name} is not an integer: {value!r}") from None

        port = num("port")
        if not 0 < port < 65536:
            raise ValueError(f"routing entry field port is out of range: {port}")
        return cls(
            host=d["host"],
            port=port,
            pgbouncer_port=num("pgbouncer_port", 0),
            member=d.get("member", ""),
            timeline=num("timeline", 0),
            updated_at=num("updated_at", 0),
        )

    @property
    def target_port(self) -> int:
        """PgBouncer's port when the primary runs one, else PostgreSQL's."""
        return self.pgbouncer_port if self.pgbouncer_port > 0 else self.port


Address = tuple[str, int]


def _address(text: str) -> Address:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"shard member address must be host:port, got {text!r}")
    return host, int(port)


def parse_members(items: Iterable[str]) -> dict[int, frozenset[Address]]:
    """``["0@10.2.0.10:5432", "0@10.1.1.10:6432", ...]`` → {shard: {(host, port), ...}}."""
    members: dict[int, set[Address]] = {}
    for item in items:
        if not item.strip():
            continue
        index, sep, addr = item.strip().partition("@")
        if not sep or not index.isdigit():
            raise ValueError(f"shard member must be <index>@<host>:<port>, got {item!r}")
        members.setdefault(int(index), set()).add(_address(addr))
    return {i: frozenset(a) for i, a in members.items()}


#: the port libpq connects to when a DSN names none (its compiled-in default, read from libpq)
LIBPQ_DEFAULT_PORT = int(next(o.compiled for o in pq.Conninfo.get_defaults() if o.keyword == b"port") or 0)


def _dsn_addresses(dsn: str) -> set[Address]:
    """The host:port pairs a DSN connects to (libpq's defaults for what it leaves out)."""
    d = conninfo_to_dict(dsn)
    hosts = str(d.get("host") or "").split(",")
    ports = str(d.get("port") or "").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return {(h, int(p) if p else LIBPQ_DEFAULT_PORT) for h, p in zip(hosts, ports, strict=False) if h}


def retarget(dsn: SecretStr | str, host: str, port: int) -> str:
    """``dsn`` (URL or key/value) pointed at ``host:port``; everything else kept."""
    raw = dsn.get_secret_value() if isinstance(dsn, SecretStr) else dsn
    return make_conninfo(raw, host=host, port=port)


def routing_table_lookup(pool: Pool, *, timeout_s: float = 0.5) -> Assignment:
    """An assignment lookup in production ``routing_table (user_id, shard_index)``."""

    async def lookup(user_id: UUID) -> int | None:
        async with pool.connection(timeout=timeout_s) as conn:
            cur = await conn.execute("SELECT shard_index FROM routing_table WHERE user_id = %s", (user_id,))
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    return lookup


@dataclass(slots=True)
class _Shard:
    configured: str | None
    dsn: str | None = None
    pool: Pool | None = None
    entry: RoutingEntry | None = None
    allowed: frozenset[Address] = frozenset()
    refused: RoutingEntry | None = None  # the last refused entry, logged once
    checked_until: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ShardRouter:
    def __init__(
        self,
        app_name: str,
        routing: aioredis.Redis | None,
        dsns: Mapping[int, SecretStr | str],
        *,
        shard_count: int | None = None,
        pool_config: PoolConfig | None = None,
        refresh_s: float = 1.0,
        routing_timeout_s: float = 0.2,
        assignment: Assignment | None = None,
        template: SecretStr | str | None = None,
        key_template: str = ROUTING_KEY,
        members: Mapping[int, Iterable[Address]] | None = None,
    ) -> None:
        if "{index}" not in key_template:
            raise ValueError(f"key_template must contain {{index}}: {key_template!r}")
        self.key_template = key_template
        if not dsns:
            raise ValueError("ShardRouter needs the configured DSN of at least one shard")
        self.app_name = app_name
        self.routing = routing
        self.shard_count = shard_count or len(dsns)
        missing = sorted(set(range(self.shard_count)) - set(dsns))
        if missing and template is None:
            raise ValueError(f"no configured DSN for shard(s) {missing} of {self.shard_count}")
        self.template = template.get_secret_value() if isinstance(template, SecretStr) else template
        self.pool_config = pool_config or PoolConfig()
        self.refresh_s = refresh_s
        self.routing_timeout_s = routing_timeout_s
        self.assignment = assignment
        self._shards = {
            i: _Shard(dsn.get_secret_value() if isinstance(dsn, SecretStr) else dsn)
            for i, dsn in dsns.items()
        }
        for i in missing:  # reachable through their routing entry only (the template's credentials)
            self._shards[i] = _Shard(None)
        for i, shard in self._shards.items():
            own = _dsn_addresses(shard.configured) if shard.configured else set()
            shard.allowed = frozenset(own | set((members or {}).get(i, ())))
        self.refused = 0
        self._retired: set[asyncio.Task[None]] = set()
        self.switches = 0

    # ------------------------------------------------------------------ which shard

    async def shard_for(self, user_id: UUID) -> int:
        if self.assignment is not None:
            try:
                assigned = await self.assignment(user_id)
            except Exception as exc:  # the assignment store is down: the hash still routes
                log.warning("shard assignment lookup failed, routing %s by hash: %s", user_id, exc)
                assigned = None
            if assigned is not None:
                if assigned not in self._shards:
                    raise LookupError(
                        f"user {user_id} is assigned to shard {assigned}, which is not configured"
                    )
                return assigned
        return shard_of(user_id, self.shard_count)

    # ------------------------------------------------------------------ which server

    async def _read_entry(self, index: int) -> tuple[bool, RoutingEntry | None]:
        """(read ok, entry); a malformed entry counts as missing (logged)."""
        if self.routing is None:
            return True, None
        try:
            async with asyncio.timeout(self.routing_timeout_s):
                raw = await self.routing.hgetall(self.key_template.format(index=index))
        except Exception as exc:
            log.warning("shard routing cache unreadable (%s); shard %d stays on its last target", exc, index)
            return False, None
        try:
            return True, RoutingEntry.parse(raw)
        except ValueError as exc:
            log.error("shard routing entry %s is malformed (%s); using the configured DSN", index, exc)
            return True, None

    async def pool(self, index: int) -> Pool:
        """The pool of shard ``index``'s current primary (opened on first use)."""
        shard = self._shards.get(index)
        if shard is None:
            raise LookupError(f"shard {index} is not configured")
        if shard.pool is not None and time.monotonic() < shard.checked_until:
            return shard.pool
        async with shard.lock:
            if shard.pool is not None and time.monotonic() < shard.checked_until:
                return shard.pool
            ok, entry = await self._read_entry(index)
            shard.checked_until = time.monotonic() + self.refresh_s
            if not ok and shard.pool is not None:
                return shard.pool
            if entry is not None and (entry.host, entry.target_port) not in shard.allowed:
                self.refused += 1
                if shard.refused != entry:
                    shard.refused = entry
                    log.error(
                        "shard %d routing entry names %s:%d (member %r), not a member of the shard; refused",
                        index,
                        entry.host,
                        entry.target_port,
                        entry.member,
                        extra={"shard": index, "host": entry.host, "port": entry.target_port},
                    )
                if shard.pool is not None:
                    return shard.pool
                entry = None
            base = shard.configured or self.template
            assert base is not None
            if entry is not None:
                dsn = retarget(base, entry.host, entry.target_port)
            elif shard.configured is not None:
                dsn = shard.configured
            else:
                raise LookupError(f"shard {index} has no routing entry and no configured DSN")
            if shard.pool is None or dsn != shard.dsn:
                await self._switch(index, shard, dsn, entry)
            shard.entry = entry
            assert shard.pool is not None
            return shard.pool

    async def _switch(self, index: int, shard: _Shard, dsn: str, entry: RoutingEntry | None) -> None:
        old = shard.pool
        pool = create_async_pool(
            dsn, app_name=self.app_name, name=f"{self.app_name}:shard_{index}", config=self.pool_config
        )
        # opened without waiting for connections: the pool keeps connecting in the background
        await pool.open(wait=False)
        shard.pool, shard.dsn = pool, dsn
        if old is not None:
            self.switches += 1
            log.warning(
                "shard %d primary moved to %s (member %s, timeline %s); reconnecting",
                index,
                self.describe(index)["target"],
                entry.member if entry else "-",
                entry.timeline if entry else "-",
            )
            task = asyncio.get_running_loop().create_task(self._close(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    @staticmethod
    async def _close(pool: Pool) -> None:
        with contextlib.suppress(Exception):
            await pool.close(timeout=5.0)

    async def pool_for_user(self, user_id: UUID) -> Pool:
        return await self.pool(await self.shard_for(user_id))

    def invalidate(self, index: int | None = None) -> None:
        """Re-read the routing entry of shard ``index`` (all shards: None) on its next use."""
        for i, shard in self._shards.items():
            if index is None or i == index:
                shard.checked_until = 0.0

    # ------------------------------------------------------------------ ops

    def describe(self, index: int) -> dict[str, Any]:
        shard = self._shards[index]
        entry = shard.entry
        dsn = shard.dsn or shard.configured or ""
        return {
            "shard": index,
            "target": describe_dsn(dsn) if "://" in dsn else _describe_conninfo(dsn),
            "source": "routing" if entry else "configured",
            "member": entry.member if entry else None,
            "timeline": entry.timeline if entry else None,
        }

    def checks(self, timeout_s: float = 2.0) -> dict[str, Callable[[], Awaitable[None]]]:
        """``shard_<n>_db``: ``SELECT 1`` on each shard's current primary."""

        def make(index: int) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await acheck(await self.pool(index), timeout_s=timeout_s)

            return run

        return {f"shard_{i}_db": make(i) for i in sorted(self._shards)}

    async def close(self) -> None:
        for shard in self._shards.values():
            if shard.pool is not None:
                await self._close(shard.pool)
                shard.pool = None
        for task in list(self._retired):
            with contextlib.suppress(Exception):
                await task

    @asynccontextmanager
    async def lifespan(self, _app: object = None) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.close()


def _describe_conninfo(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    d = conninfo_to_dict(conninfo)
    user = f"{d['user']}@" if d.get("user") else ""
    return f"postgresql://{user}{d.get('host', '')}:{d.get('port', '')}/{d.get('dbname', '')}"


class ShardRoutingSettings(UndeSettings):
    """The settings of an app that reaches the user data shards through :class:`ShardRouter`
    (the persona agent, the LLM orchestrator): :meth:`ShardRouter.from_settings` reads them."""

    #: shard routing cache on local-redis, DB 12: hash ``shard:<n>`` names each shard's primary
    #: (written by the Patroni routing callback; roles/patroni README "Routing on promotion")
    shard_routing_redis_url: RedisDsn = SecretStr("redis://localhost/12")
    #: shard 0 (local-shard-0). Used as is while ``shard:0`` is missing from the routing cache;
    #: otherwise its user, password and database are used on the host/port the routing entry names.
    shard_0_db_url: PostgresDsn = SecretStr("postgresql://app_rw@localhost/unde_shard")
    #: number of user data shards (user → shard: hash(user_id) % shard_count, spec 02 §14);
    #: shards ≥ 1 are reached through their routing entry with shard 0's credentials
    shard_count: int = Field(default=1, ge=1, le=1024)
    #: key of a shard's routing entry (the Patroni callback writes ``shard:<n>``; the lab's agents
    #: scenario uses its own keys so that the lab Patroni's entry does not move it)
    shard_routing_key: str = Field(default="shard:{index}", pattern=r"\{index\}")
    #: the only addresses a routing entry may name, per shard: ``<index>@<host>:<port>`` of each
    #: member's PostgreSQL and PgBouncer (the role renders them from the inventory); an entry
    #: naming any other address is refused (the configured DSN's own address is always allowed)
    shard_members: CommaList = Field(default_factory=list)
    #: the routing entry of a shard is re-read at most this often (and at once after a shard error)
    shard_routing_refresh_s: float = Field(default=1.0, gt=0, le=60)

    @field_validator("shard_members")
    @classmethod
    def _members_parse(cls, value: list[str]) -> list[str]:
        parse_members(value)  # ValueError names the malformed item
        return value


def router_from_settings(
    settings: ShardRoutingSettings,
    routing: aioredis.Redis | None,
    *,
    app_name: str | None = None,
    pool_config: PoolConfig | None = None,
    **options: Any,
) -> ShardRouter:
    """The router of ``settings``: shard 0's DSN (also the template of the other shards), the shard
    count, routing key and members, the refresh period; ``options`` as :class:`ShardRouter` takes
    them (``routing_timeout_s``, ...)."""
    return ShardRouter(
        app_name or settings.app_name,
        routing,
        {0: settings.shard_0_db_url},
        shard_count=settings.shard_count,
        template=settings.shard_0_db_url,
        key_template=settings.shard_routing_key,
        members=parse_members(settings.shard_members),
        pool_config=pool_config,
        refresh_s=options.pop("refresh_s", settings.shard_routing_refresh_s),
        **options,
    )
