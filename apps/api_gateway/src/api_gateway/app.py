"""HTTP service of api_gateway.

The only user entry point (behind nginx): REST API, chat fan-out to mood/context agents and the LLM
orchestrator, recognition requests.

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with a later issue (API gateway).
"""

from __future__ import annotations

from fastapi import FastAPI

from api_gateway import __version__
from api_gateway.settings import ApiGatewaySettings
from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, create_app, redis_check


def create(settings: ApiGatewaySettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``api_gateway.app:create``) with /health and /metrics."""
    settings = settings or ApiGatewaySettings.load()
    pools = AsyncPools(
        settings.app_name,
        {"production_db": settings.production_db_url, "shard_0_db": settings.shard_0_db_url},
        PoolConfig.from_settings(settings),
    )
    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    # business_auth=False: the gateway's routes are the public API behind nginx (users authenticate
    # here, not with a service token); /health and /metrics still answer only monitoring
    app = create_app(
        settings.app_name, settings, checks, version=__version__, lifespan=pools.lifespan, business_auth=False
    )
    app.state.db = pools
    return app
