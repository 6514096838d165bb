"""The phrase cache: synthesized audio of frequent phrases in local-redis (DB 10, keys ``voice:*``).

Key: ``voice:phrase:<sha256>`` of the model, the voice, the output format and

- the caller's ``cache_key`` and the text when one is given (POST /synthesize of a fixed phrase,
  e.g. ``greeting_default``: one recording whatever the mood's voice_params, and a changed text is
  never served the old audio), else
- the text and the mapped ElevenLabs ``voice_settings`` (params that map alike share the audio).

The dialogue context (``previous_text``) is not part of the key: it nudges the intonation only.
POST /synthesize stores what it synthesizes; a phrase streamed over the WebSocket is stored once it
was asked for ``PHRASE_CACHE_MIN_HITS`` times (``voice:seen:<sha256>`` counts, with the same TTL),
so one-off answer sentences do not fill the cache. Entries expire after ``PHRASE_CACHE_TTL_S``;
audio over ``PHRASE_CACHE_MAX_BYTES`` is never stored. A Redis that is down makes the cache miss
(logged), never the synthesis fail.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from unde_common.metrics import AppMetrics
from voice.mapping import VoiceSettings
from voice.settings import VoiceSettings as Settings

__all__ = ["PhraseCache", "phrase_digest"]

log = logging.getLogger(__name__)

PHRASE_PREFIX: Final = "voice:phrase:"
SEEN_PREFIX: Final = "voice:seen:"


def phrase_digest(
    settings: Settings, text: str, voice_settings: VoiceSettings, cache_key: str | None = None
) -> str:
    """The cache identity of one phrase (module doc)."""
    what: dict[str, object] = {
        "model": settings.elevenlabs_model,
        "voice": settings.elevenlabs_voice_id,
        "format": settings.audio_format,
        "text": text,
    }
    if cache_key:
        what["cache_key"] = cache_key
    else:
        what["voice_settings"] = voice_settings.as_json()
    raw = json.dumps(what, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


class PhraseCache:
    """Get and put phrase audio; ``hits`` / ``misses`` count lookups by endpoint."""

    def __init__(self, settings: Settings, metrics: AppMetrics) -> None:
        self.settings = settings
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=settings.health_check_timeout_s,
            socket_connect_timeout=settings.health_check_timeout_s,
        )
        self.hits = metrics.counter(
            "phrase_cache_hits", "Phrase cache lookups that found audio, by endpoint.", ["endpoint"]
        )
        self.misses = metrics.counter(
            "phrase_cache_misses",
            "Phrase cache lookups that found none (or Redis was down), by endpoint.",
            ["endpoint"],
        )
        for endpoint in ("synthesize", "stream"):
            self.hits.labels(endpoint)
            self.misses.labels(endpoint)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def get(self, digest: str, endpoint: str) -> bytes | None:
        try:
            audio = await self.redis.get(PHRASE_PREFIX + digest)
        except (RedisError, OSError) as exc:
            log.warning("phrase cache unavailable", extra={"error": f"{exc.__class__.__name__}: {exc}"[:300]})
            audio = None
        if isinstance(audio, bytes) and audio:
            self.hits.labels(endpoint).inc()
            return audio
        self.misses.labels(endpoint).inc()
        return None

    async def put(self, digest: str, audio: bytes) -> bool:
        """Store ``audio`` (False when too large or Redis is down)."""
        if not audio or len(audio) > self.settings.phrase_cache_max_bytes:
            return False
        try:
            await self.redis.set(PHRASE_PREFIX + digest, audio, ex=self.settings.phrase_cache_ttl_s)
        except (RedisError, OSError) as exc:
            log.warning("phrase cache not written", extra={"error": f"{exc.__class__.__name__}: {exc}"[:300]})
            return False
        return True

    async def seen(self, digest: str) -> int:
        """Count one more request of the phrase; how many within the TTL (0 when Redis is down)."""
        key = SEEN_PREFIX + digest
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.settings.phrase_cache_ttl_s)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("phrase cache unavailable", extra={"error": f"{exc.__class__.__name__}: {exc}"[:300]})
            return 0
        return int(count)
