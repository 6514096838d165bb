"""The catalog as the app reads it: ``products`` of the production DB (through the tunnel), pages
cached in the gateway Redis.

A page is one query (brand / category / product ids / SKUs / in stock, ordered by id, keyset
pagination with ``after``); its JSON is kept at ``gw:products:<sha256 of the query>`` for
``PRODUCTS_CACHE_TTL_S``. Every lookup counts ``api_gateway_products_cache_requests_total`` with
``result`` = ``hit`` | ``miss`` | ``stale``, so the hit ratio is
``rate(…{result="hit"}) / rate(…)``; ``api_gateway_products_cache_hit_ratio`` is the same ratio
since the process started. A second copy (``gw:products:stale:<hash>``,
``PRODUCTS_STALE_TTL_S``) is served when the production DB cannot answer (spec 03: if Helsinki is
down the catalog comes from the warm Redis cache). A query waits at most ``PRODUCTS_DB_TIMEOUT_S`` for
a connection; after a failure the DB is left alone for ``PRODUCTS_DB_BACKOFF_S`` (stale copies or
503 at once instead of every request waiting for the timeout).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

import psycopg
import redis.asyncio as aioredis
from prometheus_client import Counter
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api_gateway.media_settings import MediaSettings
from unde_common.db import DatabaseUnavailableError
from unde_common.metrics import AppMetrics

__all__ = ["CACHE_PREFIX", "Catalog", "ProductQuery", "split_values"]

log = logging.getLogger("api_gateway.products")

CACHE_PREFIX: Final = "gw:products:"
_COLUMNS: Final = (
    "id",
    "sku",
    "brand",
    "name",
    "description",
    "price",
    "currency",
    "category",
    "colour",
    "sizes",
    "composition",
    "image_url",
    "image_urls",
    "collage_url",
    "in_stock",
    "availability",
    "availability_updated_at",
)


@dataclass(frozen=True, slots=True)
class ProductQuery:
    """One catalog page: filters (ANDed; a list matches any of its values), page size, and the last
    product id of the previous page."""

    brands: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    ids: tuple[int, ...] = ()
    skus: tuple[str, ...] = ()
    in_stock: bool | None = None
    limit: int = 20
    after: int | None = None

    def cache_key(self) -> str:
        canonical = json.dumps(
            {
                "brands": sorted(set(self.brands)),
                "categories": sorted(set(self.categories)),
                "ids": sorted(set(self.ids)),
                "skus": sorted(set(self.skus)),
                "in_stock": self.in_stock,
                "limit": self.limit,
                "after": self.after,
            },
            separators=(",", ":"),
        )
        return CACHE_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()

    def statement(self) -> tuple[sql.Composed, list[Any]]:
        where: list[sql.Composable] = []
        params: list[Any] = []
        for column, values in (("brand", self.brands), ("category", self.categories), ("sku", self.skus)):
            if values:
                where.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
                params.append(list(values))
        if self.ids:
            where.append(sql.SQL("id = ANY(%s)"))
            params.append(list(self.ids))
        if self.in_stock is not None:
            where.append(sql.SQL("in_stock = %s"))
            params.append(self.in_stock)
        if self.after is not None:
            where.append(sql.SQL("id > %s"))
            params.append(self.after)
        condition = sql.SQL(" AND ").join(where) if where else sql.SQL("TRUE")
        params.append(self.limit + 1)  # one more than asked: tells whether a next page exists
        statement = sql.SQL("SELECT {} FROM products WHERE {} ORDER BY id LIMIT %s").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS), condition
        )
        return statement, params


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # prices keep their two decimals
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class Catalog:
    """Catalog pages from ``products`` with the Redis cache and its hit/miss counter."""

    def __init__(
        self,
        settings: MediaSettings,
        pool: AsyncConnectionPool[Any],
        cache: aioredis.Redis,
        metrics: AppMetrics,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.cache = cache
        self.requests: Counter = metrics.counter(
            "products_cache_requests",
            "Catalog page lookups in the gateway Redis cache, by result (hit, miss, stale).",
            ["result"],
        )
        for result in ("hit", "miss", "stale"):
            self.requests.labels(result)  # exported at 0 from the start: the ratio is defined at once
        self.hit_ratio = metrics.gauge(
            "products_cache_hit_ratio",
            "Share of catalog page lookups this process answered from the gateway Redis cache.",
        )
        self._counts: dict[str, int] = {"hit": 0, "miss": 0, "stale": 0}
        #: monotonic time until which the DB is not asked again after a failure
        self._db_down_until = 0.0

    def _count(self, result: Literal["hit", "miss", "stale"]) -> None:
        self.requests.labels(result).inc()
        self._counts[result] += 1
        self.hit_ratio.set(self._counts["hit"] / sum(self._counts.values()))

    async def _query(self, query: ProductQuery) -> dict[str, Any]:
        statement, params = query.statement()
        async with self.pool.connection(timeout=self.settings.products_db_timeout_s) as conn:
            cur = await conn.execute(statement, params)
            rows = await cur.fetchall()
        items = [
            {c: _json_value(v) for c, v in zip(_COLUMNS, row, strict=True)} for row in rows[: query.limit]
        ]
        more = len(rows) > query.limit
        return {"items": items, "next_after": items[-1]["id"] if more and items else None}

    async def page(self, query: ProductQuery) -> tuple[dict[str, Any], Literal["hit", "miss", "stale"]]:
        """The page and where it came from. A Redis that cannot answer is a miss (the DB still
        answers); a DB that cannot answer falls back to the stale copy, else raises."""
        key = query.cache_key()
        try:
            cached = await self.cache.get(key)
        except aioredis.RedisError as exc:
            log.warning("products cache unavailable", extra={"error": type(exc).__name__})
            cached = None
        if cached is not None:
            self._count("hit")
            page: dict[str, Any] = json.loads(cached)
            return page, "hit"
        try:
            if time.monotonic() < self._db_down_until:  # it failed a moment ago: do not wait again
                raise DatabaseUnavailableError("production_db failed less than PRODUCTS_DB_BACKOFF_S ago")
            page = await self._query(query)
        except (psycopg.OperationalError, PoolTimeout, DatabaseUnavailableError) as exc:
            if not isinstance(exc, DatabaseUnavailableError):
                self._db_down_until = time.monotonic() + self.settings.products_db_backoff_s
                log.warning("catalog query failed", extra={"error": type(exc).__name__})
            stale = await self._stale(key)
            if stale is None:
                raise
            self._count("stale")
            return stale, "stale"
        self._count("miss")
        body = json.dumps(page, separators=(",", ":"))
        try:
            async with self.cache.pipeline(transaction=False) as pipe:
                pipe.set(key, body, ex=self.settings.products_cache_ttl_s)
                if self.settings.products_stale_ttl_s > 0:
                    pipe.set(_stale_key(key), body, ex=self.settings.products_stale_ttl_s)
                await pipe.execute()
        except aioredis.RedisError as exc:
            log.warning("products page not cached", extra={"error": type(exc).__name__})
        return page, "miss"

    async def _stale(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await self.cache.get(_stale_key(key))
        except aioredis.RedisError:
            return None
        return None if raw is None else dict(json.loads(raw))


def _stale_key(key: str) -> str:
    return CACHE_PREFIX + "stale:" + key.removeprefix(CACHE_PREFIX)


def split_values(values: Sequence[str]) -> tuple[str, ...]:
    """``?brand=zara,mango&brand=hm`` → ("zara", "mango", "hm"): repeated and comma-separated."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())
