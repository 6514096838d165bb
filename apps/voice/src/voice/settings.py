"""Settings of voice (local-voice (10.2.0.12)).

Read by ``VoiceSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/voice/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field, HttpUrl, SecretStr

from unde_common.settings import HttpClientSettings, HttpServiceSettings, RedisDsn

__all__ = ["OUTPUT_FORMATS", "VoiceSettings"]

#: the ``output_format`` values of ElevenLabs' text-to-speech stream endpoint (the official SDK's
#: ``TextToSpeechStreamRequestOutputFormat``, elevenlabs-python)
OUTPUT_FORMATS = frozenset(
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


def _check_format(value: str) -> str:
    if value not in OUTPUT_FORMATS:
        raise ValueError(f"not an ElevenLabs output_format: {value!r} (one of {sorted(OUTPUT_FORMATS)})")
    return value


def _json_object(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value


def _check_keys(value: dict[str, str]) -> dict[str, str]:
    for kid, pem in value.items():
        if not kid or "BEGIN PUBLIC KEY" not in pem:
            raise ValueError(f"key {kid!r}: a PEM public key (-----BEGIN PUBLIC KEY-----) is expected")
    return value


class VoiceSettings(HttpServiceSettings, HttpClientSettings):
    """Voice server: POST /synthesize (cached phrases) on the ``voice_http`` port and the WebSocket
    /stream on the ``voice_ws`` port through ElevenLabs, both served by one process."""

    app_name: str = "voice"
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("voice_http_port", "port"))
    #: uvicorn worker processes of spec 02's VOICE_WORKERS. Voice serves both ports from one asyncio
    #: process (README: the connection limit and the metrics are exact, the work is I/O), so only
    #: 1 is accepted; the spec's 4 is refused at start-up rather than silently ignored
    workers: int = Field(default=1, ge=1, le=1, validation_alias=AliasChoices("voice_workers", "workers"))
    #: WebSocket streaming port
    ws_port: int = Field(
        default=8081, ge=1, le=65535, validation_alias=AliasChoices("voice_ws_port", "ws_port")
    )

    elevenlabs_api_key: SecretStr
    #: the avatar's ElevenLabs voice (the inventory's voice_elevenlabs_voice_id); empty is refused
    elevenlabs_voice_id: str = Field(min_length=1)
    #: ``eleven_v3``: the expressive model of ElevenLabs' text-to-speech API (its models page and
    #: the official SDK's README); the spec's ``eleven_v3_conversational`` is the ElevenAgents
    #: variant of it (the SDK lists it among the agents' models only)
    elevenlabs_model: str = Field(default="eleven_v3", min_length=1)
    elevenlabs_base_url: HttpUrl = HttpUrl("https://api.elevenlabs.io")
    #: seconds for the connection, the first byte and any later gap between bytes of one stream
    elevenlabs_timeout: float = Field(default=5, gt=0)
    #: the most one synthesis may take, start to last byte (a long answer streams for a while)
    elevenlabs_deadline_s: float = Field(default=60, gt=0)
    #: concurrent ElevenLabs streams of this process (the plan's concurrency limit)
    elevenlabs_max_concurrency: int = Field(default=20, ge=1)

    #: hot-path Redis (local-redis), DB 10: phrase cache
    redis_url: RedisDsn = SecretStr("redis://localhost/10")
    #: seconds a cached phrase lives
    phrase_cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    #: a phrase streamed over the WebSocket is cached from its n-th request on (POST /synthesize,
    #: the endpoint of fixed phrases, caches at once)
    phrase_cache_min_hits: int = Field(default=2, ge=1)
    #: longer audio is never cached (bytes)
    phrase_cache_max_bytes: int = Field(default=1024 * 1024, ge=1)
    #: the longest text one request may synthesize (characters)
    max_text_chars: int = Field(default=5000, ge=1)

    audio_format: Annotated[str, AfterValidator(_check_format)] = "mp3_44100_128"
    audio_chunk_size: int = Field(default=4096, ge=256)
    #: spec 02's STREAM_BUFFER_MS: the longest a partial chunk waits for more audio before it is
    #: sent anyway (0: send each piece as it arrives)
    stream_buffer_ms: int = Field(default=100, ge=0)

    #: open WebSocket streams at once; one more is closed with 1013 (try again later)
    ws_max_connections: int = Field(default=100, ge=1)
    #: seconds a WebSocket may stay open without a message
    ws_idle_timeout_s: float = Field(default=300, gt=0)
    #: the WebSocket needs the gateway's access token (``Authorization: Bearer``)
    ws_require_user_token: bool = True
    #: the gateway's token verification keys, JSON ``{kid: Ed25519 public key PEM}``
    jwt_public_keys: Annotated[dict[str, str], BeforeValidator(_json_object), AfterValidator(_check_keys)] = (
        Field(default_factory=dict)
    )
    jwt_issuer: str = "unde-api-gateway"
    jwt_audience: str = "unde-app"
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)
