"""HTTP service of voice (the ``voice_http`` port): ``POST /synthesize``, ``/health``, ``/metrics``.

``POST /synthesize`` ``{text, voice_params, cache_key?}`` → the audio (``audio/mpeg`` for the mp3
formats) of a short phrase, from the phrase cache or synthesized whole by ElevenLabs and then
cached (:mod:`voice.cache`); ``X-Cache: hit|miss`` says which. Callers are UNDE services with
their service token (the registry's ``voice_http`` clients: the orchestrator, the gateway).

Errors (``{"error", "detail"}``): voice_params that cannot be mapped or a text over
``MAX_TEXT_CHARS`` → 422 naming the field; ElevenLabs down, timing out, rate limiting or failing
→ 503 with ``Retry-After``; ElevenLabs refusing the request (key, voice, model: configuration) or
answering no audio → 502.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from unde_common.health import Check, create_app, redis_check
from voice import __version__
from voice.cache import phrase_digest
from voice.mapping import VoiceParamsError, map_voice_params
from voice.runtime import Runtime, media_type
from voice.settings import VoiceSettings
from voice.tts import TtsError

__all__ = ["SynthesizeRequest", "create", "tts_error_response"]

#: TtsError reasons that are ElevenLabs' trouble (503, retry later) rather than a configuration's
RETRYABLE = frozenset({"timeout", "unavailable", "rate_limited", "server_error"})


class VoiceParams(BaseModel):
    """The persona agent's voice_params (other keys, e.g. ``preset``, pass unread)."""

    model_config = ConfigDict(extra="allow")

    warmth: float = Field(description="0-1; values outside are clamped")
    tempo: float = Field(gt=0, description="speech speed, 1 = normal; spoken within 0.7-1.2")
    tension: float = Field(description="0-1; values outside are clamped")
    expressiveness: str | None = Field(default=None, description="low | moderate | high")


class SynthesizeRequest(BaseModel):
    """A phrase to speak (spec 02 §12)."""

    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1, description="the phrase")
    voice_params: VoiceParams
    cache_key: str | None = Field(
        default=None, min_length=1, max_length=200, description="names a fixed phrase (e.g. greeting_default)"
    )


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def tts_error_response(error: TtsError, retry_after_s: int) -> JSONResponse:
    if error.reason in RETRYABLE:
        return _error(503, f"tts_{error.reason}", error.detail, {"Retry-After": str(retry_after_s)})
    return _error(502, f"tts_{error.reason}", error.detail)


def create(settings: VoiceSettings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``voice.app:create``). With ``runtime`` (the voice process
    shares one with its WebSocket server) the app uses it and leaves closing it to its owner;
    without, its lifespan makes one and closes it."""
    settings = settings or (runtime.settings if runtime is not None else VoiceSettings.load())
    own = runtime is None
    shared = runtime or Runtime.create(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if own:
                await shared.aclose()

    checks: dict[str, Check] = {
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    app = create_app(
        settings.app_name, settings, checks, version=__version__, metrics=shared.metrics, lifespan=lifespan
    )
    app.state.runtime = shared
    audio_type = media_type(settings.audio_format)

    @app.post(
        "/synthesize",
        response_class=Response,
        responses={200: {"content": {audio_type: {}}, "description": "the audio"}},
    )
    async def synthesize(body: SynthesizeRequest, request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        if len(body.text) > settings.max_text_chars:
            return _error(422, "text_too_long", f"text: at most {settings.max_text_chars} characters")
        if not body.text.strip():
            return _error(422, "text_blank", "text: must hold more than white space")
        try:
            voice_settings = map_voice_params(body.voice_params.model_dump())
        except VoiceParamsError as exc:
            return _error(422, "invalid_voice_params", str(exc))
        start = time.perf_counter()
        digest = phrase_digest(settings, body.text, voice_settings, body.cache_key)
        audio = await runtime.cache.get(digest, "synthesize")
        if audio is not None:
            runtime.tts.first_byte.labels("cache").observe((time.perf_counter() - start) * 1000)
            return Response(audio, media_type=audio_type, headers={"X-Cache": "hit"})
        try:
            audio = await runtime.tts.synthesize(body.text, voice_settings)
        except TtsError as exc:
            return tts_error_response(exc, settings.store_retry_after_s)
        await runtime.cache.put(digest, audio)
        return Response(audio, media_type=audio_type, headers={"X-Cache": "miss"})

    return app
