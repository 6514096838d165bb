"""HTTP service of persona_agent.

Persona agent (rule engine, no LLM): /persona, /persona/feedback, /persona/flush, p95 < 15 ms.

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with issue 8 (dialogue agents).
"""

from __future__ import annotations

from fastapi import FastAPI

from persona_agent import __version__
from persona_agent.settings import PersonaAgentSettings
from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, create_app, redis_check


def create(settings: PersonaAgentSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``persona_agent.app:create``) with /health and /metrics."""
    settings = settings or PersonaAgentSettings.load()
    pools = AsyncPools(
        settings.app_name, {"shard_0_db": settings.shard_0_db_url}, PoolConfig.from_settings(settings)
    )
    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    app = create_app(settings.app_name, settings, checks, version=__version__, lifespan=pools.lifespan)
    app.state.db = pools
    return app
