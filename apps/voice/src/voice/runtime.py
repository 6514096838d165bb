"""What one voice process shares between its two servers: the metrics, the ElevenLabs client, the
phrase cache, the user token verifier and the WebSocket connection count."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from unde_common.metrics import AppMetrics
from voice import __version__
from voice.cache import PhraseCache
from voice.settings import VoiceSettings
from voice.tts import ElevenLabsClient
from voice.user_auth import UserTokenVerifier

__all__ = ["AUDIO_TYPES", "Runtime", "media_type"]

#: the media type of each output format family
AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "pcm": "audio/pcm",
    "ulaw": "audio/basic",
    "alaw": "audio/x-alaw-basic",
    "opus": "audio/ogg",
}


def media_type(audio_format: str) -> str:
    return AUDIO_TYPES.get(audio_format.split("_", 1)[0], "application/octet-stream")


@dataclass
class Runtime:
    settings: VoiceSettings
    metrics: AppMetrics
    tts: ElevenLabsClient
    cache: PhraseCache
    verifier: UserTokenVerifier
    #: open WebSocket streams of this process
    ws_open: int = 0
    extras: dict[str, object] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        settings: VoiceSettings,
        metrics: AppMetrics | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Runtime:
        metrics = metrics or AppMetrics(settings.app_name, version=__version__)
        return cls(
            settings=settings,
            metrics=metrics,
            tts=ElevenLabsClient(settings, metrics, transport=transport),
            cache=PhraseCache(settings, metrics),
            verifier=UserTokenVerifier(settings),
        )

    async def aclose(self) -> None:
        await self.tts.aclose()
        await self.cache.aclose()
