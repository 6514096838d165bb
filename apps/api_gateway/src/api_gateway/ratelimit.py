"""Per-user rate limits: one token bucket per (bucket, user) in the gateway Redis, updated by one
Lua script (EVALSHA; redis-py loads it on NOSCRIPT), so every uvicorn worker shares the same count.

``RATE_LIMITS`` (group_vars/all/entry.yml ``unde_rate_limits``) gives each bucket its refill
``rate`` (tokens per second) and ``burst``. A request takes ``cost`` tokens (1; the replay route
takes one per pair); an empty bucket → :class:`RateLimitedError` with the seconds until enough
tokens are back (the route answers 429 + ``Retry-After``). The state is ``gw:rl:<bucket>:<key>``
(tokens, time) and expires once the bucket would be full again. Redis's own clock (``TIME``) is
used, so hosts with skewed clocks agree.

When the gateway Redis cannot answer, the request is let through (counted in
``api_gateway_rate_limit_errors_total``): rate limits protect the back end, they must not take the
whole API down with the cache.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

import redis.asyncio as aioredis
from prometheus_client import Counter

from api_gateway.settings import Rate
from unde_common.metrics import AppMetrics

__all__ = ["RateLimitedError", "RateLimiter"]

log = logging.getLogger("api_gateway.ratelimit")

KEY: Final = "gw:rl:{bucket}:{key}"

# KEYS[1] the bucket; ARGV: rate (tokens/s), burst, cost. Returns {granted, wait_ms}.
_LUA: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate); ts = now end
local granted = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  granted = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {granted, wait_ms}
"""


class RateLimitedError(Exception):
    """The bucket is empty; ``retry_after_s`` (whole seconds, ≥ 1) until the request would pass."""

    def __init__(self, bucket: str, retry_after_s: int) -> None:
        super().__init__(f"rate limit of {bucket} reached; retry after {retry_after_s} s")
        self.bucket = bucket
        self.retry_after_s = retry_after_s


class RateLimiter:
    def __init__(self, client: aioredis.Redis, rates: dict[str, Rate], metrics: AppMetrics) -> None:
        self.client = client
        self.rates = rates
        self._script: Any = client.register_script(_LUA)
        self.limited: Counter = metrics.counter(
            "rate_limited", "Requests refused with 429 by the per-user rate limit, by bucket.", ["bucket"]
        )
        self.errors: Counter = metrics.counter(
            "rate_limit_errors", "Rate limit checks that could not reach Redis (the request passed)."
        )

    async def check(self, user_id: object, bucket: str, cost: int = 1) -> None:
        """Take ``cost`` tokens of ``bucket`` for ``user_id`` (any key: a user UUID, a client
        address) or raise :class:`RateLimitedError`. A bucket missing from the settings is a bug."""
        rate = self.rates[bucket]
        # a cost above the burst could never pass: it is charged as a full bucket
        cost = max(1, min(int(cost), rate.burst))
        try:
            granted, wait_ms = await self._script(
                keys=[KEY.format(bucket=bucket, key=user_id)], args=[rate.rate, rate.burst, cost]
            )
        except aioredis.RedisError as exc:
            self.errors.inc()
            log.warning("rate limit unavailable; request let through", extra={"error": type(exc).__name__})
            return
        if int(granted) != 1:
            self.limited.labels(bucket).inc()
            raise RateLimitedError(bucket, max(1, math.ceil(int(wait_ms) / 1000)))
