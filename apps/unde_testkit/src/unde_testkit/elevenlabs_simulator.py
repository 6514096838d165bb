"""ElevenLabs' streaming text-to-speech endpoint simulated on loopback for the voice server's tests
(``POST /v1/text-to-speech/{voice_id}/stream``, https://elevenlabs.io/docs/api-reference/text-to-speech/stream).

Strict like the real one, as far as its public description goes (the official SDK
elevenlabs-python: the body fields, the ``output_format`` values, the 0.7-1.2 ``speed`` range, the
FastAPI-style 422 ``{"detail": [{"loc", "msg", "type"}]}``; the 401 body as users report it:
``{"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}``; the 429
``too_many_concurrent_requests`` with ``current-concurrent-requests`` / ``maximum-concurrent-requests``
headers):

- ``xi-api-key`` missing or not :data:`ELEVENLABS_KEY` → 401; a voice not in ``voices`` → 404
  ``voice_not_found``; a body that is not a JSON object, an empty ``text``, a ``model_id`` that is
  not a text-to-speech model, an ``output_format`` not in the list, a ``voice_settings`` value out
  of range → 422.
- The audio: deterministic MPEG-1 Layer III frames (128 kbps, 44.1 kHz, 417 bytes each: a real
  frame header, payload bytes derived from the text), :func:`expected_audio`. It is streamed in
  ``chunks`` pieces of uneven sizes after ``first_byte_delay_s``, ``chunk_delay_s`` between pieces.
- ``mode``: ``ok`` | ``rate_limited`` (429) | ``server_error`` (500) | ``unavailable`` (503 HTML page
  of a front end) | ``timeout`` (nothing for ``hang_s``, then the audio) | ``stall`` (the first
  piece, then nothing for ``hang_s``) | ``malformed`` (200 ``application/json``, no audio).
  ElevenLabs being down is the simulator not served at all (stop its server, or a free port).
- ``requests``: what each call sent (path, query, headers, JSON body).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "ELEVENLABS_KEY",
    "ELEVENLABS_VOICE",
    "FRAME_BYTES",
    "OUTPUT_FORMATS",
    "TTS_MODELS",
    "ElevenLabsSimulator",
    "expected_audio",
    "split_chunks",
]

ELEVENLABS_KEY: Final = "el-test-key"
ELEVENLABS_VOICE: Final = "test-voice-id"
#: the text-to-speech models of ElevenLabs' models page
TTS_MODELS: Final = frozenset(
    {
        "eleven_v3",
        "eleven_multilingual_v2",
        "eleven_flash_v2_5",
        "eleven_flash_v2",
        "eleven_turbo_v2_5",
        "eleven_turbo_v2",
    }
)
#: the stream endpoint's ``output_format`` values (elevenlabs-python)
OUTPUT_FORMATS: Final = frozenset(
    {
        "mp3_22050_32",
        "mp3_24000_48",
        "mp3_44100_32",
        "mp3_44100_64",
        "mp3_44100_96",
        "mp3_44100_128",
        "mp3_44100_192",
        "pcm_8000",
        "pcm_16000",
        "pcm_22050",
        "pcm_24000",
        "pcm_32000",
        "pcm_44100",
        "pcm_48000",
        "ulaw_8000",
        "alaw_8000",
        "opus_48000_32",
        "opus_48000_64",
        "opus_48000_96",
        "opus_48000_128",
        "opus_48000_192",
    }
)
#: a 128 kbps / 44.1 kHz MPEG-1 Layer III frame: 144 · 128000 / 44100 = 417 bytes (no padding)
FRAME_BYTES: Final = 417
_FRAME_HEADER: Final = bytes([0xFF, 0xFB, 0x90, 0x64])
_RANGES: Final = {
    "stability": (0.0, 1.0),
    "similarity_boost": (0.0, 1.0),
    "style": (0.0, 1.0),
    "speed": (0.7, 1.2),
}


def expected_audio(text: str, *, frames_per_char: float = 0.5, min_frames: int = 3) -> bytes:
    """The audio the simulator streams for ``text``: ``max(min_frames, ceil(len · frames_per_char))``
    MP3 frames whose payload is a SHA-256 stream of the text."""
    frames = max(min_frames, math.ceil(len(text) * frames_per_char))
    seed = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    out = bytearray()
    for n in range(frames):
        payload = bytearray()
        block = 0
        while len(payload) < FRAME_BYTES - len(_FRAME_HEADER):
            payload += hashlib.sha256(seed + n.to_bytes(4, "big") + block.to_bytes(4, "big")).digest()
            block += 1
        out += _FRAME_HEADER + payload[: FRAME_BYTES - len(_FRAME_HEADER)]
    return bytes(out)


def split_chunks(audio: bytes, chunks: int) -> list[bytes]:
    """``audio`` in ``chunks`` pieces of uneven sizes (never on a frame boundary but by chance)."""
    if chunks <= 1 or len(audio) < chunks:
        return [audio]
    weights = [1 + (i * 7) % 5 for i in range(chunks)]
    total = sum(weights)
    cuts, acc = [], 0
    for weight in weights[:-1]:
        acc += weight
        cuts.append(len(audio) * acc // total)
    bounds = [0, *cuts, len(audio)]
    return [audio[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status, headers=headers)


def _invalid(loc: list[str | int], msg: str, kind: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status_code=422)


class ElevenLabsSimulator:
    """The stream endpoint on loopback (module doc); serve ``.app`` with
    :class:`~unde_testkit.testing.LoopbackServer`."""

    def __init__(
        self,
        *,
        voices: frozenset[str] = frozenset({ELEVENLABS_VOICE}),
        chunks: int = 5,
        first_byte_delay_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        hang_s: float = 3.0,
    ) -> None:
        self.voices = voices
        self.chunks = self._chunks = chunks
        self.first_byte_delay_s = first_byte_delay_s
        self.chunk_delay_s = chunk_delay_s
        self.hang_s = hang_s
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/text-to-speech/{voice_id}/stream", self.stream, methods=["POST"]),
                Route("/{path:path}", self.unknown, methods=["GET", "POST"]),
            ]
        )

    def reset(self) -> None:
        """Answer normally again, with the constructor's chunking and no delays; forget the requests."""
        self.mode = "ok"
        self.chunks = self._chunks
        self.first_byte_delay_s = 0.0
        self.chunk_delay_s = 0.0
        self.requests.clear()

    def texts(self) -> list[str]:
        """The ``text`` of every recorded call, in order."""
        return [r["json"].get("text", "") for r in self.requests if isinstance(r.get("json"), dict)]

    async def unknown(self, request: Request) -> Response:
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    def _validate(self, query: dict[str, str], body: Any) -> Response | None:
        output_format = query.get("output_format", "mp3_44100_128")
        if output_format not in OUTPUT_FORMATS:
            return _invalid(
                ["query", "output_format"],
                f"Input should be one of {', '.join(sorted(OUTPUT_FORMATS))}",
                "enum",
            )
        if not isinstance(body, dict):
            return _invalid(["body"], "Input should be a valid dictionary or object", "model_attributes_type")
        text = body.get("text")
        if not isinstance(text, str):
            return _invalid(["body", "text"], "Field required", "missing")
        if not text.strip():
            return _invalid(["body", "text"], "Text must not be empty", "value_error")
        model = body.get("model_id", "eleven_multilingual_v2")
        if model not in TTS_MODELS:
            return _invalid(
                ["body", "model_id"], f"A model with model ID {model} does not exist", "value_error"
            )
        for field in ("previous_text", "next_text"):
            if body.get(field) is not None and not isinstance(body[field], str):
                return _invalid(["body", field], "Input should be a valid string", "string_type")
        settings = body.get("voice_settings")
        if settings is None:
            return None
        if not isinstance(settings, dict):
            return _invalid(["body", "voice_settings"], "Input should be a valid dictionary", "dict_type")
        for field, (lo, hi) in _RANGES.items():
            value = settings.get(field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                return _invalid(
                    ["body", "voice_settings", field], "Input should be a valid number", "float_type"
                )
            if not lo <= value <= hi:
                return _invalid(
                    ["body", "voice_settings", field],
                    f"Input should be between {lo} and {hi}",
                    "value_error",
                )
        boost = settings.get("use_speaker_boost")
        if boost is not None and not isinstance(boost, bool):
            return _invalid(
                ["body", "voice_settings", "use_speaker_boost"],
                "Input should be a valid boolean",
                "bool_type",
            )
        return None

    async def stream(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            {
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": body,
            }
        )
        if request.headers.get("xi-api-key") != ELEVENLABS_KEY:
            return _error(401, "invalid_api_key", "Invalid API key")
        voice_id = request.path_params["voice_id"]
        if voice_id not in self.voices:
            return _error(404, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
        problem = self._validate(dict(request.query_params), body)
        if problem is not None:
            return problem
        if self.mode == "rate_limited":
            return _error(
                429,
                "too_many_concurrent_requests",
                "Too many concurrent requests. Your current subscription is associated with a maximum of "
                "2 concurrent requests (running in parallel).",
                {"current-concurrent-requests": "2", "maximum-concurrent-requests": "2"},
            )
        if self.mode == "server_error":
            return _error(500, "internal_server_error", "An internal server error occurred.")
        if self.mode == "unavailable":
            return Response(b"<html><body>503 Service Unavailable</body></html>", 503, media_type="text/html")
        if self.mode == "malformed":
            return JSONResponse({"audio": None, "status": "ok"})
        if self.mode == "timeout":
            await asyncio.sleep(self.hang_s)
        pieces = split_chunks(expected_audio(body["text"]), self.chunks)
        mode = self.mode

        async def audio() -> AsyncIterator[bytes]:
            if self.first_byte_delay_s:
                await asyncio.sleep(self.first_byte_delay_s)
            for n, piece in enumerate(pieces):
                if n and self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                yield piece
                if mode == "stall":
                    await asyncio.sleep(self.hang_s)

        return StreamingResponse(
            audio(), media_type="audio/mpeg", headers={"request-id": f"req-{len(self.requests)}"}
        )


def main() -> None:  # pragma: no cover - run by the lab scenario (molecule/entry/prepare.yml)
    """``python -m unde_testkit.elevenlabs_simulator --host H --port P`` (the lab scenario names
    both): the stream endpoint with the lab keys (:data:`ELEVENLABS_KEY`, voice
    :data:`ELEVENLABS_VOICE`), answering at once."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="UNDE ElevenLabs simulator (lab only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(ElevenLabsSimulator().app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()
