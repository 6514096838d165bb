"""Settings of voice (local-voice (10.2.0.12)).

Read by ``VoiceSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/voice/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, HttpUrl, SecretStr

from unde_common.settings import HttpClientSettings, HttpServiceSettings, RedisDsn


class VoiceSettings(HttpServiceSettings, HttpClientSettings):
    """Voice server: POST /synthesize (cached phrases) on :8080 and WebSocket /stream on :8081 through
    ElevenLabs.
    """

    app_name: str = "voice"
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("voice_http_port", "port"))
    workers: int = Field(default=4, ge=1, le=64, validation_alias=AliasChoices("voice_workers", "workers"))
    #: WebSocket streaming port
    ws_port: int = Field(
        default=8081, ge=1, le=65535, validation_alias=AliasChoices("voice_ws_port", "ws_port")
    )

    elevenlabs_api_key: SecretStr
    elevenlabs_voice_id: str
    elevenlabs_model: str = "eleven_v3_conversational"
    elevenlabs_base_url: HttpUrl = HttpUrl("https://api.elevenlabs.io")
    elevenlabs_timeout: float = Field(default=5, gt=0)

    #: hot-path Redis (local-redis), DB 10: phrase cache + stream buffer
    redis_url: RedisDsn = SecretStr("redis://localhost/10")

    audio_format: str = "mp3_44100_128"
    audio_chunk_size: int = Field(default=4096, ge=256)
    stream_buffer_ms: int = Field(default=100, ge=0)
