"""HTTP service of ximilar_gw: the only place that talks to the Ximilar API (spec 02 §9) and the v5.1
dual retrieval (spec 01).

- ``POST /detect {"url"}`` → ``{"items": [{"crop_url", "bbox": [x1, y1, x2, y2], "category",
  "confidence", "tags", "attributes": {"type", "color", "material", "pattern"}}], "width",
  "height"}``; ``crop_url`` is the photo URL with a ``#xywh=`` region (see
  :mod:`unde_common.images`); ``tags`` are the ones Ximilar's detect_tags gave the object. No
  objects → ``{"items": []}`` (200: an empty detection is an answer, not an error).
- ``POST /tag {"url"}`` (a crop) → ``{"type", "color", "material", "pattern", "tags": {task: [...]}}``
- ``POST /search {"crop_url", "category"?, "top_k"?, "force_booster"?}`` →
  ``{"candidates": [{"sku_id", "score", "brand", "image_urls", "metadata", "sources"}],
  "backend", "used_ximilar_booster", "pgvector": {...}, "degraded": [...]}`` (see
  :mod:`ximilar_gw.routes.search` and :mod:`ximilar_gw.search` for SEARCH_BACKEND).

Errors: 422 malformed body / bad or unreachable image URL, 413 oversized, 415 not an image, 429
the shared Ximilar rate limit (``Retry-After``), 502 Ximilar (or every search source) failed,
with a message naming the provider and the reason.

Metrics (spec 01 §19): ``ximilar_gw_detect_latency_ms``, ``ximilar_gw_search_latency_ms``,
``ximilar_gw_tag_latency_ms``, ``ximilar_gw_requests_total{endpoint}``,
``ximilar_gw_errors_total{endpoint,reason}``, ``ximilar_gw_rate_limit_hits_total{source}``,
``pgvector_knn_latency_ms``, ``pgvector_knn_results_count``, ``ximilar_booster_rate`` (share of
searches that used the Ximilar booster, counted in Redis across workers),
``ximilar_gw_searches_total{backend,booster}``.
"""

from __future__ import annotations

from fastapi import FastAPI

from unde_common.health import create_app
from unde_common.metrics import AppMetrics
from ximilar_gw import __version__
from ximilar_gw.gateway import Gateway
from ximilar_gw.routes import detect, search, tag
from ximilar_gw.settings import XimilarGwSettings


def create(settings: XimilarGwSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``ximilar_gw.app:create``): the health/metrics app of
    :func:`unde_common.health.create_app` with the routes of :mod:`ximilar_gw.routes`."""
    settings = settings or XimilarGwSettings.load()
    metrics = AppMetrics(settings.app_name, version=__version__)
    gw = Gateway(settings, metrics)
    app = create_app(
        settings.app_name, settings, gw.checks(), metrics=metrics, version=__version__, lifespan=gw.lifespan
    )
    app.state.gateway = gw
    app.state.db = gw.pools
    for module in (detect, tag, search):
        app.include_router(module.router)
    return app
