"""Per-user locks: an ``asyncio.Lock`` per user inside the process, and a Redis lock
(``SET NX PX`` + compare-and-delete) across the uvicorn workers."""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

__all__ = ["LockTimeoutError", "UserLocks"]

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class LockTimeoutError(TimeoutError):
    pass


class UserLocks:
    def __init__(self, client: aioredis.Redis, *, ttl_ms: int = 10_000, wait_s: float = 5.0) -> None:
        self.r = client
        self.ttl_ms = ttl_ms
        self.wait_s = wait_s
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def local(self, user_id: str) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[user_id] = lock
        return lock

    @asynccontextmanager
    async def hold(self, user_id: str) -> AsyncIterator[None]:
        lock = self.local(user_id)
        async with lock:
            key = f"persona:lock:{user_id}"
            token = secrets.token_hex(8)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.wait_s
            delay = 0.002
            while not await self.r.set(key, token, nx=True, px=self.ttl_ms):
                if loop.time() > deadline:
                    raise LockTimeoutError(f"user {user_id} is locked by another worker")
                await asyncio.sleep(delay)
                delay = min(0.05, delay * 2)
            try:
                yield
            finally:
                await self.r.eval(_RELEASE, 1, key, token)
