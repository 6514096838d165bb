"""HTTP service of mood_agent.

Mood agent: POST /analyze → mood_frame (light LLM classification with fallback, smoothing), p95 <
200 ms.

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with issue 8 (dialogue agents).
"""

from __future__ import annotations

from fastapi import FastAPI

from mood_agent import __version__
from mood_agent.settings import MoodAgentSettings
from unde_common.health import Check, create_app, redis_check


def create(settings: MoodAgentSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``mood_agent.app:create``) with /health and /metrics."""
    settings = settings or MoodAgentSettings.load()
    checks: dict[str, Check] = {
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    app = create_app(settings.app_name, settings, checks, version=__version__)
    return app
