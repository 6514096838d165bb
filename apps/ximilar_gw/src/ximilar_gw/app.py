"""HTTP service of ximilar_gw.

Ximilar gateway: /detect, /tag, /search with v5.1 dual retrieval (pgvector kNN via the embedder +
conditional Ximilar booster).

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with issue 7 (recognition pipeline v5.1).
"""

from __future__ import annotations

from fastapi import FastAPI

from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, create_app
from ximilar_gw import __version__
from ximilar_gw.settings import XimilarGwSettings


def create(settings: XimilarGwSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``ximilar_gw.app:create``) with /health and /metrics."""
    settings = settings or XimilarGwSettings.load()
    pools = AsyncPools(
        settings.app_name, {"production_db": settings.production_db_url}, PoolConfig.from_settings(settings)
    )
    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
    }
    app = create_app(settings.app_name, settings, checks, version=__version__, lifespan=pools.lifespan)
    app.state.db = pools
    return app
