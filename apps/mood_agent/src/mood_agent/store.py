"""The previous mood state in Redis (local-redis DB 9, TTL 5 min as spec 03 says for frames):
``mood:last:{user_id}`` and ``mood:frame:{mood_frame_id}`` (for ``previous_mood_frame_id``)."""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as aioredis

from mood_agent.analyzer import Previous

__all__ = ["FrameStore"]

log = logging.getLogger(__name__)


class FrameStore:
    def __init__(self, client: aioredis.Redis, *, ttl_s: int = 300, timeout_s: float = 0.02) -> None:
        self.r = client
        self.ttl_s = ttl_s
        #: each read / write is abandoned after this long (the request carries on without it)
        self.timeout_s = timeout_s

    async def previous(self, user_id: str, frame_id: str | None) -> tuple[Previous | None, str | None]:
        """(previous state, error); Redis trouble answers (None, reason) instead of raising."""
        try:
            async with asyncio.timeout(self.timeout_s):
                keys = ([f"mood:frame:{frame_id}"] if frame_id is not None else []) + [f"mood:last:{user_id}"]
                values = await self.r.mget(keys)
                raw = next((v for v in values if v is not None), None)
        except TimeoutError:
            return None, f"redis: no answer within {self.timeout_s * 1000:.0f} ms"
        except Exception as exc:
            return None, f"redis: {exc.__class__.__name__}"
        if raw is None:
            return None, None
        try:
            return Previous.from_dict(json.loads(raw)), None
        except (ValueError, KeyError, TypeError) as exc:
            return None, f"redis: bad previous frame ({exc.__class__.__name__})"

    async def save(self, user_id: str, keep: Previous) -> str | None:
        text = json.dumps(keep.to_dict())
        try:
            async with asyncio.timeout(self.timeout_s):
                pipe = self.r.pipeline(transaction=False)
                pipe.set(f"mood:last:{user_id}", text, ex=self.ttl_s)
                pipe.set(f"mood:frame:{keep.mood_frame_id}", text, ex=self.ttl_s)
                await pipe.execute()
        except TimeoutError:
            log.warning("mood frame not kept: Redis did not answer within %.0f ms", self.timeout_s * 1000)
            return f"redis: no answer within {self.timeout_s * 1000:.0f} ms"
        except Exception as exc:
            log.warning("could not keep the mood frame in Redis: %s", exc)
            return f"redis: {exc.__class__.__name__}"
        return None
