"""What ximilar_gw's routes share: one :class:`Gateway` per app (settings, metrics, the production DB
pool, Redis, the Ximilar / embedder / image clients) and the error handling of every endpoint
(:meth:`Gateway.guarded`). The routes (:mod:`ximilar_gw.routes`) find it with :func:`gateway`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

import httpx
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, redis_check
from unde_common.http import (
    AsyncProviderClient,
    ProviderConfig,
    ProviderError,
    RetryPolicy,
    provider_config,
    service_config,
)
from unde_common.images import FetchPolicy, ImageError, ImageRef, async_image_client, fetch_image_async
from unde_common.metrics import AppMetrics
from ximilar_gw.rate_limiter import RateLimitExceededError, RedisRateLimiter
from ximilar_gw.settings import XimilarGwSettings
from ximilar_gw.ximilar import XimilarClient

__all__ = ["Gateway", "GatewayDep", "GatewayMetrics", "error_response", "gateway"]

T = TypeVar("T")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


class GatewayMetrics:
    """Spec 01 §19 metrics of ximilar-gw."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.app = metrics
        self.latency = {
            name: metrics.histogram(f"{name}_latency_ms", f"POST /{name} latency (ms).")
            for name in ("detect", "tag", "search")
        }
        self.requests = metrics.counter("requests", "Requests by endpoint.", ["endpoint"])
        self.errors = metrics.counter(
            "errors", "Failed requests by endpoint and reason.", ["endpoint", "reason"]
        )
        self.rate_limit_hits = metrics.counter(
            "rate_limit_hits", "Ximilar rate limit hits: 429 from Ximilar or the shared limiter.", ["source"]
        )
        self.searches = metrics.counter(
            "searches", "Searches by backend and booster use.", ["backend", "booster"]
        )
        self.knn_latency = metrics.histogram(
            "pgvector_knn_latency_ms", "pgvector kNN query time (ms).", prefixed=False
        )
        self.knn_results = metrics.gauge(
            "pgvector_knn_results_count",
            "SKUs returned by the latest pgvector kNN query.",
            prefixed=False,
            multiprocess_mode="mostrecent",
        )
        self.booster_rate = metrics.gauge(
            "ximilar_booster_rate",
            "Share of searches that called the Ximilar booster (all workers, since the counters were reset).",
            prefixed=False,
            multiprocess_mode="mostrecent",
        )


def _ximilar_config(settings: XimilarGwSettings) -> ProviderConfig:
    """Ximilar's client config: its own read timeout and attempts, Retry-After waits of at most 5 s
    (a user is waiting on the answer)."""
    cfg = provider_config(
        settings,
        "ximilar",
        settings.ximilar_base_url,
        read_timeout_s=settings.ximilar_read_timeout_s,
        write_timeout_s=settings.ximilar_read_timeout_s,
    )
    return cfg.with_(
        retry=RetryPolicy(
            max_attempts=settings.ximilar_max_attempts,
            backoff_base_s=settings.http_backoff_base_s,
            backoff_max_s=settings.http_backoff_max_s,
            max_retry_after_s=min(settings.http_max_retry_after_s, 5.0),
        )
    )


class Gateway:
    """The clients and metrics of one ximilar_gw app. The HTTP clients (``images``, ``ximilar``,
    ``embedder``) exist while :meth:`lifespan` runs."""

    images: httpx.AsyncClient
    ximilar: XimilarClient
    embedder: AsyncProviderClient

    def __init__(self, settings: XimilarGwSettings, metrics: AppMetrics) -> None:
        self.settings = settings
        self.image_policy = FetchPolicy.from_settings(settings)
        self.metrics = GatewayMetrics(metrics)
        self.pools = AsyncPools(
            settings.app_name,
            {"production_db": settings.production_db_url},
            PoolConfig.from_settings(settings),
        )
        self.redis = aioredis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_connect_timeout=2, socket_timeout=2
        )
        self.limiter = RedisRateLimiter(
            self.redis,
            "ximilar",
            rate=settings.ximilar_rate_limit_per_s,
            burst=settings.ximilar_rate_limit_burst,
        )
        self.ximilar_config = _ximilar_config(settings)

    def checks(self) -> dict[str, Check]:
        """The /health checks: the production DB pool and Redis."""
        timeout_s = self.settings.health_check_timeout_s
        return {
            **self.pools.checks(timeout_s),
            "redis": redis_check(self.settings.redis_url, timeout_s=timeout_s),
        }

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        s = self.settings
        async with (
            self.pools.lifespan(app),
            async_image_client(s, s.image_fetch_timeout_s) as images,
        ):
            self.images = images
            self.ximilar = XimilarClient(
                self.ximilar_config,
                token=s.ximilar_api_token.get_secret_value(),
                collection_id=s.ximilar_collection_id,
                service_path=s.ximilar_service_path,
                limiter=self.limiter,
                rate_limit_hits=self.metrics.rate_limit_hits,
                limiter_wait_s=s.ximilar_rate_limit_wait_s,
            )
            self.embedder = AsyncProviderClient(
                service_config(
                    s,
                    "embedder",
                    s.embedder_url,
                    read_timeout_s=s.embedder_timeout_s,
                    retry=RetryPolicy(max_attempts=1),
                )
            )
            try:
                yield
            finally:
                await self.ximilar.aclose()
                await self.embedder.aclose()
                await self.redis.aclose()

    async def load(self, url: str) -> tuple[ImageRef, Image.Image]:
        """Fetch the image (or the region) ``url`` names."""
        ref = ImageRef.parse(url)
        return ref, await fetch_image_async(self.images, ref, self.image_policy)

    async def guarded(self, endpoint: str, work: Callable[[], Awaitable[T]]) -> T | JSONResponse:
        """Run an endpoint's work, counted and timed; image, rate-limit and provider failures
        become 4xx/429/502 answers naming the cause."""
        m = self.metrics
        m.requests.labels(endpoint).inc()
        start = time.perf_counter()
        try:
            return await work()
        except ImageError as exc:
            m.errors.labels(endpoint, f"image_{exc.status}").inc()
            return error_response(exc.status, exc.message)
        except RateLimitExceededError as exc:
            m.rate_limit_hits.labels("local").inc()
            m.errors.labels(endpoint, "rate_limited").inc()
            return error_response(429, str(exc), {"Retry-After": "1"})
        except ProviderError as exc:
            m.errors.labels(endpoint, exc.provider).inc()
            return error_response(502, str(exc))
        finally:
            m.latency[endpoint].observe((time.perf_counter() - start) * 1000)


def gateway(request: Request) -> Gateway:
    """The :class:`Gateway` of the app serving ``request`` (a FastAPI dependency)."""
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(gateway)]
