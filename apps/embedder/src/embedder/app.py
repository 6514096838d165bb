"""HTTP service of embedder.

Runtime image embedder: POST /embed → L2-normalised vector(512) from the FashionCLIP 2.0 ONNX image
encoder.

This issue lays the ground: ``/health`` (with the dependency checks below), ``/health/live`` and
``/metrics``. The service endpoints come with issue 7 (recognition pipeline v5.1).
"""

from __future__ import annotations

from fastapi import FastAPI

from embedder import __version__
from embedder.settings import EmbedderSettings
from unde_common.health import create_app


def create(settings: EmbedderSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``embedder.app:create``) with /health and /metrics."""
    settings = settings or EmbedderSettings.load()
    app = create_app(settings.app_name, settings, version=__version__)
    return app
