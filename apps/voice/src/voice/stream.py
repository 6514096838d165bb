"""The WebSocket ``/stream`` (the ``voice_ws`` port): answer sentences → audio as it is made.

Protocol, one connection per conversation turn or longer (any number of messages, one after the
other):

- the upgrade carries the user's access token (:mod:`voice.user_auth`); without a valid one →
  text frame ``{"type": "error", "code": "unauthorized"}`` and close 1008;
- past ``WS_MAX_CONNECTIONS`` open streams → ``{"type": "error", "code": "too_many_connections"}``
  and close **1013** (try again later);
- each text message ``{"text", "voice_params", "previous_text"?}`` (``stream: true`` of the spec is
  accepted and means nothing more) → binary frames of ``AUDIO_CHUNK_SIZE`` bytes as the audio
  comes from ElevenLabs (the last one shorter; a partial chunk waits at most ``STREAM_BUFFER_MS``
  for more), then the text frame ``{"type": "end", "bytes": n, "cached": bool}``;
- a message that is not a JSON text frame → error ``invalid_message`` and close **1007**; JSON that
  is not a valid request (no text, a text over ``MAX_TEXT_CHARS``, bad voice_params) → error
  ``invalid_message`` / ``invalid_voice_params`` naming the field, close **1008**;
- ElevenLabs down, timing out, rate limiting, failing or answering no audio → error
  ``tts_<reason>`` (``tts_timeout``, ``tts_unavailable``, ``tts_rate_limited``, ``tts_server_error``,
  ``tts_rejected``, ``tts_malformed``) with a ``detail`` the app can show, close **1011**; audio
  already sent stays valid (the app may play it and show the error after it);
- phrases in the phrase cache are served from it whether ElevenLabs answers or not;
- no message for ``WS_IDLE_TIMEOUT_S`` → close 1000.

The connection is only ever from nginx on local-app (the firewall admits nothing else to
``voice_ws``); it has no service token, the user's token is the credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Final

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voice.cache import phrase_digest
from voice.mapping import VoiceParamsError, VoiceSettings, map_voice_params, sends_context
from voice.runtime import Runtime
from voice.tts import TtsError
from voice.user_auth import UserTokenError

__all__ = [
    "CLOSE_INTERNAL",
    "CLOSE_INVALID_DATA",
    "CLOSE_POLICY",
    "CLOSE_TRY_LATER",
    "Rechunker",
    "StreamRequestError",
    "create_ws",
    "parse_message",
]

log = logging.getLogger(__name__)

CLOSE_NORMAL: Final = 1000
CLOSE_INVALID_DATA: Final = 1007
CLOSE_POLICY: Final = 1008
CLOSE_INTERNAL: Final = 1011
CLOSE_TRY_LATER: Final = 1013
_END: Final = object()


class StreamRequestError(ValueError):
    """A message that is not a valid stream request: ``code`` for the error frame, ``close`` the code."""

    def __init__(self, code: str, detail: str, close: int) -> None:
        self.code = code
        self.detail = detail
        self.close = close
        super().__init__(detail)


def _speakable(field: str, value: str) -> None:
    """A string ElevenLabs can be sent: valid UTF-8 (no lone surrogate from a ``\\ud800`` escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StreamRequestError(
            "invalid_message", f"{field}: not valid Unicode (a lone surrogate)", CLOSE_INVALID_DATA
        ) from None


def parse_message(raw: str, max_text_chars: int) -> tuple[str, VoiceSettings, str | None]:
    """(text, ElevenLabs voice settings, previous_text to send) of a text frame, or StreamRequestError."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        raise StreamRequestError("invalid_message", "the message is not JSON", CLOSE_INVALID_DATA) from None
    if not isinstance(message, dict):
        raise StreamRequestError("invalid_message", "the message must be a JSON object", CLOSE_POLICY)
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        raise StreamRequestError("invalid_message", "text: a non-empty string is required", CLOSE_POLICY)
    if len(text) > max_text_chars:
        raise StreamRequestError(
            "invalid_message", f"text: at most {max_text_chars} characters", CLOSE_POLICY
        )
    _speakable("text", text)
    previous = message.get("previous_text")
    if previous is not None and not isinstance(previous, str):
        raise StreamRequestError("invalid_message", "previous_text: must be a string", CLOSE_POLICY)
    if previous is not None and len(previous) > max_text_chars:
        raise StreamRequestError(
            "invalid_message", f"previous_text: at most {max_text_chars} characters", CLOSE_POLICY
        )
    if previous is not None:
        _speakable("previous_text", previous)
    params = message.get("voice_params")
    try:
        voice_settings = map_voice_params(params)
        context = sends_context(params)
    except VoiceParamsError as exc:
        raise StreamRequestError("invalid_voice_params", str(exc), CLOSE_POLICY) from None
    return text, voice_settings, (previous or None) if context else None


class Rechunker:
    """Cuts a byte stream into ``size`` pieces: ``feed`` returns the full ones, ``flush`` the rest."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out = []
        while len(self.buffer) >= self.size:
            out.append(bytes(self.buffer[: self.size]))
            del self.buffer[: self.size]
        return out

    def flush(self) -> bytes:
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest


async def _error(websocket: WebSocket, code: str, detail: str, close: int) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps({"type": "error", "code": code, "detail": detail}))
        await websocket.close(close)


class _Streamer:
    """One connection's work."""

    def __init__(self, runtime: Runtime, websocket: WebSocket) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.websocket = websocket

    async def send_audio(self, audio: bytes) -> int:
        size = self.settings.audio_chunk_size
        for offset in range(0, len(audio), size):
            await self.websocket.send_bytes(audio[offset : offset + size])
        return len(audio)

    async def from_cache(self, digest: str, start: float) -> int | None:
        audio = await self.runtime.cache.get(digest, "stream")
        if audio is None:
            return None
        self.runtime.tts.first_byte.labels("cache").observe((time.perf_counter() - start) * 1000)
        return await self.send_audio(audio)

    async def from_elevenlabs(
        self, text: str, voice_settings: VoiceSettings, previous: str | None, keep: bool
    ) -> tuple[int, bytes | None]:
        """Stream one synthesis to the socket: (bytes sent, the whole audio when ``keep`` and small)."""
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)

        async def produce() -> None:
            try:
                async for piece in self.runtime.tts.stream(text, voice_settings, previous):
                    await queue.put(piece)
                await queue.put(_END)
            except Exception as exc:  # handed to the consumer, which raises it: never a silent hang
                await queue.put(exc)

        producer = asyncio.create_task(produce())
        chunker = Rechunker(self.settings.audio_chunk_size)
        wait_s = self.settings.stream_buffer_ms / 1000
        kept: bytearray | None = bytearray() if keep else None
        sent = 0
        #: when the oldest byte of the partial chunk arrived (None: nothing waits)
        waiting_since: float | None = None
        try:
            while True:
                try:
                    if waiting_since is not None and wait_s > 0:
                        left = waiting_since + wait_s - time.monotonic()
                        item = await asyncio.wait_for(queue.get(), max(left, 0.0))
                    else:
                        item = await queue.get()
                except TimeoutError:  # a partial chunk waited long enough: send it as it is
                    rest = chunker.flush()
                    await self.websocket.send_bytes(rest)
                    sent += len(rest)
                    waiting_since = None
                    continue
                if item is _END:
                    break
                if isinstance(item, Exception):
                    rest = chunker.flush()
                    if rest:
                        await self.websocket.send_bytes(rest)
                    raise item
                if kept is not None:
                    kept += item
                    if len(kept) > self.settings.phrase_cache_max_bytes:
                        kept = None
                for chunk in chunker.feed(item):
                    await self.websocket.send_bytes(chunk)
                    sent += len(chunk)
                    waiting_since = None
                if chunker.buffer and waiting_since is None:
                    waiting_since = time.monotonic()
            rest = chunker.flush()
            if rest:
                await self.websocket.send_bytes(rest)
                sent += len(rest)
        finally:
            if not producer.done():
                producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
        return sent, bytes(kept) if kept is not None else None

    async def one(self, raw: str) -> None:
        text, voice_settings, previous = parse_message(raw, self.settings.max_text_chars)
        start = time.perf_counter()
        digest = phrase_digest(self.settings, text, voice_settings)
        sent = await self.from_cache(digest, start)
        cached = sent is not None
        if sent is None:
            keep = await self.runtime.cache.seen(digest) >= self.settings.phrase_cache_min_hits
            sent, audio = await self.from_elevenlabs(text, voice_settings, previous, keep)
            if audio is not None:
                await self.runtime.cache.put(digest, audio)
        await self.websocket.send_text(json.dumps({"type": "end", "bytes": sent, "cached": cached}))

    async def serve(self) -> None:
        while True:
            try:
                message = await asyncio.wait_for(self.websocket.receive(), self.settings.ws_idle_timeout_s)
            except TimeoutError:
                await self.websocket.close(CLOSE_NORMAL)
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raise StreamRequestError(
                    "invalid_message", "binary messages are not accepted: send JSON text", CLOSE_INVALID_DATA
                )
            await self.one(raw)


def create_ws(runtime: Runtime) -> Starlette:
    """The WebSocket app of the ``voice_ws`` port (no HTTP routes; no service auth: module doc)."""
    gauge = runtime.metrics.gauge("ws_connections", "Open WebSocket audio streams.")
    refused = runtime.metrics.counter(
        "ws_refused", "WebSocket streams refused before streaming, by reason.", ["reason"]
    )
    for reason in ("unauthorized", "too_many_connections"):
        refused.labels(reason)

    async def stream(websocket: WebSocket) -> None:
        settings = runtime.settings
        await websocket.accept()
        try:
            runtime.verifier.verify(websocket.headers.get("authorization"))
        except UserTokenError as exc:
            refused.labels("unauthorized").inc()
            await _error(websocket, "unauthorized", str(exc), CLOSE_POLICY)
            return
        if runtime.ws_open >= settings.ws_max_connections:
            refused.labels("too_many_connections").inc()
            await _error(
                websocket,
                "too_many_connections",
                f"the voice server holds {settings.ws_max_connections} streams: try again shortly",
                CLOSE_TRY_LATER,
            )
            return
        runtime.ws_open += 1
        gauge.inc()
        try:
            await _Streamer(runtime, websocket).serve()
        except StreamRequestError as exc:
            await _error(websocket, exc.code, exc.detail, exc.close)
        except TtsError as exc:
            await _error(websocket, f"tts_{exc.reason}", exc.detail, CLOSE_INTERNAL)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("voice stream failed")
            await _error(websocket, "internal_error", "the voice server failed", CLOSE_INTERNAL)
        finally:
            runtime.ws_open -= 1
            gauge.dec()
            if websocket.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):
                    await websocket.close(CLOSE_NORMAL)

    return Starlette(routes=[WebSocketRoute("/stream", stream)])
