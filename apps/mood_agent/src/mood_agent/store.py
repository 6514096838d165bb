"""The previous mood state in Redis (local-redis DB 9, TTL 5 min as spec 03 says for frames):
``mood:last:{user_id}`` and ``mood:frame:{mood_frame_id}`` (for ``previous_mood_frame_id``)."""

from __future__ import annotations

import json
import logging

import redis.asyncio as aioredis

from mood_agent.analyzer import Previous

__all__ = ["FrameStore"]

log = logging.getLogger(__name__)


class FrameStore:
    def __init__(self, client: aioredis.Redis, *, ttl_s: int = 300) -> None:
        self.r = client
        self.ttl_s = ttl_s

    async def previous(self, user_id: str, frame_id: str | None) -> tuple[Previous | None, str | None]:
        """(previous state, error); Redis trouble answers (None, reason) instead of raising."""
        try:
            raw = None
            if frame_id is not None:
                raw = await self.r.get(f"mood:frame:{frame_id}")
            if raw is None:
                raw = await self.r.get(f"mood:last:{user_id}")
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
            pipe = self.r.pipeline(transaction=False)
            pipe.set(f"mood:last:{user_id}", text, ex=self.ttl_s)
            pipe.set(f"mood:frame:{keep.mood_frame_id}", text, ex=self.ttl_s)
            await pipe.execute()
        except Exception as exc:
            log.warning("could not keep the mood frame in Redis: %s", exc)
            return f"redis: {exc.__class__.__name__}"
        return None
