"""HTTP service of embedder.

Runtime image embedder: ``POST /embed {"image_url": ...}`` → the L2-normalised vector(512) of the
FashionCLIP 2.0 ONNX image encoder (ximilar-gw calls it for the pgvector kNN of each crop).
``image_url`` may carry a region (``#xywh=x,y,w,h``, see :mod:`unde_common.images`).

Errors: 422 malformed body, bad or unreachable URL; 413 oversized image; 415 not an image; 503 the
model is not loaded (``/health`` names why); 500 (a neutral body, the cause logged) the model
failed on an image. Metrics (spec 01 §19): ``embedder_inference_latency_ms``
(histogram, alert p95 > 300 ms), ``embedder_errors_total{reason}`` (alert > 1% of
``embedder_requests_total``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from embedder import __version__
from embedder.model import ImageEncoder, ModelError
from embedder.settings import EmbedderSettings
from unde_common.health import create_app
from unde_common.images import FetchPolicy, ImageError, ImageRef, async_image_client, fetch_image_async
from unde_common.metrics import AppMetrics

log = logging.getLogger(__name__)


class EmbedRequest(BaseModel):
    image_url: str = Field(min_length=1, max_length=4096)


class EmbedResponse(BaseModel):
    embedding: list[float]
    dim: int
    model_version: str
    inference_ms: float


def load_encoder(settings: EmbedderSettings) -> ImageEncoder:
    return ImageEncoder(
        settings.model_path,
        dim=settings.embedding_dim,
        threads=settings.onnx_threads,
        providers=settings.onnx_providers,
    )


def create(settings: EmbedderSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``embedder.app:create``) with /embed, /health and /metrics."""
    settings = settings or EmbedderSettings.load()
    metrics = AppMetrics(settings.app_name, version=__version__)
    latency = metrics.histogram("inference_latency_ms", "Model inference time per image (ms).")
    requests_total = metrics.counter("requests", "POST /embed requests.")
    errors = metrics.counter("errors", "POST /embed requests that failed, by reason.", ["reason"])

    encoder: ImageEncoder | None = None
    model_error = ""
    try:
        encoder = load_encoder(settings)
    except ModelError as exc:
        model_error = str(exc)
        log.error("model not loaded", extra={"error": model_error})

    def model_check() -> None:
        if encoder is None:
            raise ModelError(model_error)

    holder: dict[str, httpx.AsyncClient] = {}
    policy = FetchPolicy.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with async_image_client(settings, settings.image_fetch_timeout_s) as client:
            holder["http"] = client
            yield

    app = create_app(
        settings.app_name,
        settings,
        {"model": model_check},
        metrics=metrics,
        version=__version__,
        lifespan=lifespan,
    )
    app.state.encoder = encoder

    @app.post("/embed", response_model=EmbedResponse)
    async def embed(body: EmbedRequest) -> EmbedResponse | JSONResponse:
        requests_total.inc()
        if encoder is None:
            errors.labels("model").inc()
            # why (a path, onnxruntime's words) is in /health for monitoring and in the startup log
            return JSONResponse({"detail": "model not loaded"}, status_code=503)
        try:
            ref = ImageRef.parse(body.image_url)
            client = holder.get("http") or async_image_client(settings, settings.image_fetch_timeout_s)
            image = await fetch_image_async(client, ref, policy)
        except ImageError as exc:
            errors.labels(f"http_{exc.status}").inc()
            return JSONResponse({"detail": exc.message}, status_code=exc.status)
        start = time.perf_counter()
        try:
            vector = await run_in_threadpool(encoder.embed, [image])
        except ModelError:
            errors.labels("inference").inc()
            raise  # the shared handler logs it with its traceback and answers a neutral 500
        elapsed = (time.perf_counter() - start) * 1000
        latency.observe(elapsed)
        return EmbedResponse(
            embedding=[float(v) for v in vector[0]],
            dim=encoder.dim,
            model_version=settings.model_version,
            inference_ms=round(elapsed, 2),
        )

    return app
