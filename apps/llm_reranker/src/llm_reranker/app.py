"""HTTP service of llm_reranker.

LLM reranker: /tag (style, occasion, brand style, season) and /rerank (visual + semantic) through
Gemini.

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with issue 7 (recognition pipeline v5.1).
"""

from __future__ import annotations

from fastapi import FastAPI

from llm_reranker import __version__
from llm_reranker.settings import LlmRerankerSettings
from unde_common.health import create_app


def create(settings: LlmRerankerSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``llm_reranker.app:create``) with /health and /metrics."""
    settings = settings or LlmRerankerSettings.load()
    app = create_app(settings.app_name, settings, version=__version__)
    return app
