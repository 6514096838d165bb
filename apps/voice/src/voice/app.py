"""HTTP service of voice.

Voice server: POST /synthesize (cached phrases) on :8080 and WebSocket /stream on :8081 through
ElevenLabs.

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with a later issue (voice server).
"""

from __future__ import annotations

from fastapi import FastAPI

from unde_common.health import Check, create_app, redis_check
from voice import __version__
from voice.settings import VoiceSettings


def create(settings: VoiceSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``voice.app:create``) with /health and /metrics."""
    settings = settings or VoiceSettings.load()
    checks: dict[str, Check] = {
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    app = create_app(settings.app_name, settings, checks, version=__version__)
    return app
