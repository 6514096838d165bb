"""Idempotency of /persona/feedback (per signal_id) and /persona/flush (per user + exchange):
an in-process TTL map in front of Redis (``SET NX EX``), both kept 72 h."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis

__all__ = ["IDEMPOTENCY_TTL_S", "Idempotency"]

IDEMPOTENCY_TTL_S = 72 * 3600


class Idempotency:
    def __init__(
        self, client: aioredis.Redis, *, ttl_s: int = IDEMPOTENCY_TTL_S, max_local: int = 50_000
    ) -> None:
        self.r = client
        self.ttl_s = ttl_s
        self.max_local = max_local
        self._local: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def _remember(self, key: str, value: str) -> None:
        self._local[key] = (time.monotonic() + self.ttl_s, value)
        self._local.move_to_end(key)
        while len(self._local) > self.max_local:
            self._local.popitem(last=False)

    def _local_get(self, key: str) -> str | None:
        hit = self._local.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._local[key]
            return None
        return hit[1]

    async def claim(self, key: str) -> bool:
        """True the first time ``key`` is seen (within the TTL), False on a repeat."""
        if self._local_get(key) is not None:
            return False
        first = bool(await self.r.set(f"persona:idem:{key}", "1", nx=True, ex=self.ttl_s))
        self._remember(key, "1")
        return first

    async def release(self, key: str) -> None:
        """Forget a claim whose work failed, so a retry is processed."""
        self._local.pop(key, None)
        await self.r.delete(f"persona:idem:{key}")

    async def result(self, key: str) -> dict[str, Any] | None:
        local = self._local_get(key)
        if local is not None:
            value: dict[str, Any] = json.loads(local)
            return value
        raw = await self.r.get(f"persona:result:{key}")
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._remember(key, text)
        stored: dict[str, Any] = json.loads(text)
        return stored

    async def store_result(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, sort_keys=True)
        await self.r.set(f"persona:result:{key}", text, ex=self.ttl_s)
        self._remember(key, text)
