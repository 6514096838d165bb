"""EventScanner: the mall's current and next-24-hour events from production ``events``
(read-only user), cached for an hour by the caller."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

__all__ = ["EventScanner"]

HORIZON = timedelta(hours=24)


class EventScanner:
    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection[TupleRow]], *, timeout_s: float = 2.0
    ) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    async def events(self, mall_id: str, now: datetime) -> list[dict[str, Any]]:
        async with self.pool.connection(timeout=self.timeout_s) as conn:
            cur = await conn.execute(
                "SELECT kind, title, store, brand, starts_at, ends_at, payload FROM events"
                " WHERE mall_id = %s AND ends_at >= %s AND starts_at <= %s ORDER BY starts_at, id LIMIT 100",
                (mall_id, now, now + HORIZON),
            )
            rows = await cur.fetchall()
        return [
            {
                "kind": kind,
                "title": title,
                "store": store,
                "brand": brand,
                "starts_at": starts.isoformat(),
                "ends_at": ends.isoformat(),
                "payload": payload or {},
            }
            for kind, title, store, brand, starts, ends, payload in rows
        ]
