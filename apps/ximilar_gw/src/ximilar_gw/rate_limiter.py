"""One rate limiter for the Ximilar API shared by every uvicorn worker of ximilar-gw (spec 02 §9:
"единый rate limiting"): a token bucket kept in Redis and updated atomically by a Lua script, so
four worker processes (or two gateway hosts) together never exceed ``rate`` calls per second
(bursts up to ``burst``).

    limiter = RedisRateLimiter(redis, "ximilar", rate=10, burst=20)
    await limiter.acquire(max_wait_s=2.0)      # RateLimitExceededError after 2 s without a token
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import redis.asyncio as aioredis

__all__ = ["RateLimitExceededError", "RedisRateLimiter"]

# KEYS[1] bucket hash; ARGV: rate/s, burst, now (s, float), cost. Returns {granted, wait_ms}.
_LUA: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate); ts = now end
local granted = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  granted = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
return {granted, wait_ms}
"""


class RateLimitExceededError(RuntimeError):
    """No token within the allowed wait."""


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, name: str, *, rate: float, burst: int) -> None:
        self.client = client
        self.key = f"ratelimit:{name}"
        self.rate = rate
        self.burst = burst
        self._script: Any = client.register_script(_LUA)

    async def try_acquire(self, cost: int = 1) -> float:
        """0.0 when a token was taken, else the seconds to wait before one is available."""
        granted, wait_ms = await self._script(
            keys=[self.key], args=[self.rate, self.burst, time.time(), cost]
        )
        return 0.0 if int(granted) == 1 else int(wait_ms) / 1000.0

    async def acquire(self, cost: int = 1, *, max_wait_s: float = 2.0) -> float:
        """Take a token, waiting up to ``max_wait_s``; returns the seconds waited."""
        deadline = time.monotonic() + max_wait_s
        waited = 0.0
        while True:
            wait = await self.try_acquire(cost)
            if wait == 0.0:
                return waited
            if time.monotonic() + wait > deadline:
                raise RateLimitExceededError(
                    f"Ximilar rate limit ({self.rate:g}/s, burst {self.burst}) reached; "
                    f"no token within {max_wait_s:g}s"
                )
            await asyncio.sleep(wait)
            waited += wait
