"""The streaming ElevenLabs client: ``POST {base}/v1/text-to-speech/{voice_id}/stream``.

One call per phrase, never retried (a retry would start the audio again; the WebSocket has
already sent part of it): header ``xi-api-key``, query ``output_format`` (setting
``AUDIO_FORMAT``), JSON body ``text``, ``model_id`` (``ELEVENLABS_MODEL``), ``voice_settings``
(:mod:`voice.mapping`) and ``previous_text`` when the phrase goes with its context. The body of a
200 is handed over as it arrives. ``ELEVENLABS_TIMEOUT`` (5 s) bounds the connection, the wait
for the first byte and every later gap; ``ELEVENLABS_DEADLINE_S`` the whole stream.

Every failure is a :class:`TtsError` whose ``reason`` is the label of
``voice_elevenlabs_errors_total``: ``timeout`` (no answer or no byte in time), ``unavailable``
(connection refused or reset), ``rate_limited`` (429), ``server_error`` (5xx), ``rejected``
(another 4xx: a bad key, voice, model or setting: a configuration problem), ``malformed`` (a 200
that is not audio).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

import httpx

from unde_common.http import AsyncProviderClient, ProviderError, provider_config
from unde_common.metrics import LATENCY_MS_BUCKETS, AppMetrics
from voice.mapping import VoiceSettings
from voice.settings import VoiceSettings as Settings

__all__ = ["REASONS", "ElevenLabsClient", "TtsError"]

REASONS: Final = ("timeout", "unavailable", "rate_limited", "server_error", "rejected", "malformed")
#: the first bytes of an MP3 stream: an ID3 tag or a frame sync (11 set bits)
_ID3: Final = b"ID3"


class TtsError(Exception):
    """A synthesis that failed; ``reason`` is one of :data:`REASONS`, ``detail`` says what happened
    (no key, no URL secrets), ``status`` the HTTP status when there was one."""

    def __init__(self, reason: str, detail: str, status: int | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.status = status
        super().__init__(f"ElevenLabs {reason}: {detail}")


def _classify(exc: ProviderError) -> TtsError:
    status = exc.status
    if status == 429:
        return TtsError("rate_limited", "ElevenLabs refused the request: too many requests", status)
    if status is not None and status >= 500:
        return TtsError("server_error", f"ElevenLabs answered HTTP {status}", status)
    if status is not None:
        return TtsError("rejected", f"ElevenLabs rejected the request: HTTP {status}", status)
    cause = exc.__cause__
    if exc.reason.startswith("deadline") or isinstance(cause, httpx.TimeoutException):
        return TtsError("timeout", "ElevenLabs did not answer in time")
    return TtsError("unavailable", "ElevenLabs cannot be reached")


def _looks_like_audio(audio_format: str, content_type: str, first: bytes) -> bool:
    if not content_type.lower().startswith("audio/"):
        return False
    if audio_format.startswith("mp3_"):
        return first.startswith(_ID3) or (len(first) >= 2 and first[0] == 0xFF and first[1] & 0xE0 == 0xE0)
    return True


class ElevenLabsClient:
    """The voice server's ElevenLabs connection (one per process; ``aclose()`` at shutdown)."""

    def __init__(
        self, settings: Settings, metrics: AppMetrics, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        timeout = settings.elevenlabs_timeout
        config = provider_config(
            settings,
            "elevenlabs",
            settings.elevenlabs_base_url,
            headers={"xi-api-key": settings.elevenlabs_api_key.get_secret_value(), "accept": "audio/*"},
            connect_timeout_s=timeout,
            read_timeout_s=timeout,
            write_timeout_s=timeout,
            pool_timeout_s=timeout,
            deadline_s=settings.elevenlabs_deadline_s,
            max_concurrency=settings.elevenlabs_max_concurrency,
            max_connections=settings.elevenlabs_max_concurrency,
        )
        self.client = AsyncProviderClient(config, transport=transport)
        self.path = f"/v1/text-to-speech/{quote(settings.elevenlabs_voice_id, safe='')}/stream"
        self.requests = metrics.counter(
            "elevenlabs_requests", "Synthesis requests sent to ElevenLabs (the base of the error rate)."
        )
        self.errors = metrics.counter(
            "elevenlabs_errors", "ElevenLabs synthesis requests that failed, by reason.", ["reason"]
        )
        for reason in REASONS:
            self.errors.labels(reason)
        self.first_byte = metrics.histogram(
            "tts_latency_ms",
            "Milliseconds from the synthesis request to its first audio byte, by source (elevenlabs, cache).",
            ["source"],
            buckets=LATENCY_MS_BUCKETS,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def body(self, text: str, voice_settings: VoiceSettings, previous_text: str | None) -> dict[str, object]:
        """The JSON body of one synthesis."""
        body: dict[str, object] = {
            "text": text,
            "model_id": self.settings.elevenlabs_model,
            "voice_settings": voice_settings.as_json(),
        }
        if previous_text:
            body["previous_text"] = previous_text
        return body

    async def stream(
        self, text: str, voice_settings: VoiceSettings, previous_text: str | None = None
    ) -> AsyncIterator[bytes]:
        """The audio of ``text`` as it arrives (non-empty pieces of any size); TtsError on failure,
        also after some audio was yielded."""
        self.requests.inc()
        start = time.perf_counter()
        first = True
        try:
            async with self.client.stream(
                "POST",
                self.path,
                params={"output_format": self.settings.audio_format},
                json=self.body(text, voice_settings, previous_text),
            ) as response:
                content_type = response.headers.get("content-type", "")
                async for piece in response.aiter_bytes():
                    if not piece:
                        continue
                    if first:
                        if not _looks_like_audio(self.settings.audio_format, content_type, piece):
                            raise TtsError(
                                "malformed", f"ElevenLabs answered {content_type or 'no type'}, not audio"
                            )
                        self.first_byte.labels("elevenlabs").observe((time.perf_counter() - start) * 1000)
                        first = False
                    yield piece
                if first:
                    raise TtsError("malformed", "ElevenLabs answered without audio")
        except ProviderError as exc:
            error = _classify(exc)
            self.errors.labels(error.reason).inc()
            raise error from exc
        except TtsError as exc:
            self.errors.labels(exc.reason).inc()
            raise

    async def synthesize(
        self, text: str, voice_settings: VoiceSettings, previous_text: str | None = None
    ) -> bytes:
        """The whole audio of ``text``."""
        return b"".join([piece async for piece in self.stream(text, voice_settings, previous_text)])
