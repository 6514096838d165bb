"""Two-level cache (in-process + Redis) with a fresh TTL and a longer stale copy, and a bounded
wait for the source: on a miss the caller waits at most ``wait_s`` for the fetch; a slower fetch
keeps running in the background and fills the cache for the next request. Redis trouble never
fails a request (the in-process level still works)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

__all__ = ["Fetched", "StaleCache"]

log = logging.getLogger(__name__)

Status = Literal["fresh", "cached", "stale", "absent"]


@dataclass(frozen=True, slots=True)
class Fetched:
    value: Any
    status: Status
    error: str | None = None


class StaleCache:
    def __init__(
        self, redis: aioredis.Redis, prefix: str, *, ttl_s: float, stale_ttl_s: float, wait_s: float
    ) -> None:
        self.r = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.stale_ttl_s = stale_ttl_s
        self.wait_s = wait_s
        self._local: dict[str, tuple[float, Any]] = {}
        self._inflight: dict[str, asyncio.Task[Any]] = {}

    async def _redis_get(self, key: str) -> tuple[float, Any] | None:
        try:
            raw = await self.r.get(f"{self.prefix}:{key}")
        except Exception as exc:
            log.debug("redis get failed: %s", exc)
            return None
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return float(doc["at"]), doc["value"]
        except (ValueError, KeyError, TypeError):
            return None

    async def _store(self, key: str, value: Any) -> None:
        now = time.time()
        self._local[key] = (now, value)
        if len(self._local) > 10_000:
            self._local.pop(next(iter(self._local)))
        try:
            await self.r.set(
                f"{self.prefix}:{key}", json.dumps({"at": now, "value": value}), ex=int(self.stale_ttl_s)
            )
        except Exception as exc:
            log.debug("redis set failed: %s", exc)

    async def get(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Fetched:
        now = time.time()
        entry = self._local.get(key)
        if entry is None or now - entry[0] > self.ttl_s:
            remote = await self._redis_get(key)
            if remote is not None and (entry is None or remote[0] > entry[0]):
                entry = remote
                self._local[key] = remote
        if entry is not None and now - entry[0] <= self.ttl_s:
            return Fetched(entry[1], "cached")
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch_and_store(key, fetch))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        try:
            value = await asyncio.wait_for(asyncio.shield(task), timeout=self.wait_s)
            return Fetched(value, "fresh")
        except TimeoutError:
            error = f"no answer within {self.wait_s * 1000:.0f} ms (still fetching)"
        except Exception as exc:
            error = f"{exc.__class__.__name__}: {str(exc)[:200]}"
        if entry is not None and now - entry[0] <= self.stale_ttl_s:
            return Fetched(entry[1], "stale", error)
        return Fetched(None, "absent", error)

    async def _fetch_and_store(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        value = await fetch()
        await self._store(key, value)
        return value
