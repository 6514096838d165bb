"""HTTP service of embed_batch.

Batch catalog indexing into pgvector sku_image_embeddings: POST /embed_batch, GET /status and Celery
workers.

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with issue 7 (recognition pipeline v5.1).
"""

from __future__ import annotations

from fastapi import FastAPI

from embed_batch import __version__
from embed_batch.settings import EmbedBatchSettings
from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, create_app


def create(settings: EmbedBatchSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``embed_batch.app:create``) with /health and /metrics."""
    settings = settings or EmbedBatchSettings.load()
    pools = AsyncPools(
        settings.app_name, {"production_db": settings.production_db_url}, PoolConfig.from_settings(settings)
    )
    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
    }
    app = create_app(settings.app_name, settings, checks, version=__version__, lifespan=pools.lifespan)
    app.state.db = pools
    return app
