"""HTTP service of context_agent.

Context agent: POST /context → context_frame (geo, weather, time, events, culture), p95 < 100 ms.

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with issue 8 (dialogue agents).
"""

from __future__ import annotations

from fastapi import FastAPI

from context_agent import __version__
from context_agent.settings import ContextAgentSettings
from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, create_app, redis_check


def create(settings: ContextAgentSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``context_agent.app:create``) with /health and /metrics."""
    settings = settings or ContextAgentSettings.load()
    pools = AsyncPools(
        settings.app_name, {"production_db": settings.production_db_url}, PoolConfig.from_settings(settings)
    )
    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    app = create_app(settings.app_name, settings, checks, version=__version__, lifespan=pools.lifespan)
    app.state.db = pools
    return app
