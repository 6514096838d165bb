"""HTTP service of ximilar_gw: the only place that talks to the Ximilar API (spec 02 §9) and the v5.1
dual retrieval (spec 01).

- ``POST /detect {"url"}`` → ``{"items": [{"crop_url", "bbox": [x1, y1, x2, y2], "category",
  "confidence"}], "width", "height"}``; ``crop_url`` is the photo URL with a ``#xywh=`` region
  (see :mod:`embedder.images`). No objects → ``{"items": []}`` (200: an empty detection is an
  answer, not an error).
- ``POST /tag {"url"}`` (a crop) → ``{"type", "color", "material", "pattern", "tags": {task: [...]}}``
- ``POST /search {"crop_url", "category"?, "top_k"?, "force_booster"?}`` →
  ``{"candidates": [{"sku_id", "score", "brand", "image_urls", "metadata", "sources"}],
  "backend", "used_ximilar_booster", "pgvector": {...}, "degraded": [...]}`` (see
  :mod:`ximilar_gw.search` for SEARCH_BACKEND).

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

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, Field

from embedder.images import ImageError, ImageRef, fetch_image_async, jpeg_bytes
from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, create_app, redis_check
from unde_common.http import AsyncProviderClient, ProviderError, RetryPolicy, provider_config
from unde_common.metrics import AppMetrics
from ximilar_gw import __version__
from ximilar_gw.rate_limiter import RateLimitExceededError, RedisRateLimiter
from ximilar_gw.search import Backend, Candidate, merge, needs_booster
from ximilar_gw.settings import XimilarGwSettings
from ximilar_gw.ximilar import XimilarClient

T = TypeVar("T")
log = logging.getLogger(__name__)

KNN_SQL = """
WITH nn AS MATERIALIZED (
    SELECT sku, brand, image_url, image_index, embedding <=> %(q)s::vector AS dist
    FROM unde_ai.sku_image_embeddings
    ORDER BY embedding <=> %(q)s::vector
    LIMIT %(limit)s
)
SELECT nn.sku, nn.brand, nn.image_url, nn.dist, p.name, p.price, p.currency, p.category, p.colour,
       p.image_url AS main_image, p.image_urls, p.in_stock
FROM nn LEFT JOIN public.products p ON p.sku = nn.sku
ORDER BY nn.dist
"""


class UrlBody(BaseModel):
    url: str = Field(min_length=1, max_length=4096)


class SearchBody(BaseModel):
    crop_url: str = Field(min_length=1, max_length=4096)
    category: str | None = Field(default=None, max_length=100)
    top_k: int = Field(default=10, ge=1, le=100)
    #: the orchestrator's re-query when the availability filter leaves too few candidates
    force_booster: bool = False


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _best(tags: dict[str, list[dict[str, Any]]], *tasks: str) -> str | None:
    for task in tasks:
        values = tags.get(task) or []
        if values:
            best = max(values, key=lambda v: float(v.get("prob", 0)))
            return str(best.get("name"))
    return None


def _ximilar_candidate(meta: dict[str, Any], score: float) -> Candidate | None:
    sku = meta.get("sku_id") or meta.get("sku")
    if not sku:
        return None
    urls = meta.get("image_urls") or ([meta["_url"]] if meta.get("_url") else [])
    extra = {k: v for k, v in meta.items() if k not in ("_id", "_url", "_base64", "sku_id", "image_urls")}
    return Candidate(str(sku), score, meta.get("brand"), list(urls), extra, ["ximilar"])


def create(settings: XimilarGwSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``ximilar_gw.app:create``)."""
    settings = settings or XimilarGwSettings.load()
    metrics = AppMetrics(settings.app_name, version=__version__)
    latency = {
        name: metrics.histogram(f"{name}_latency_ms", f"POST /{name} latency (ms).")
        for name in ("detect", "tag", "search")
    }
    requests_total = metrics.counter("requests", "Requests by endpoint.", ["endpoint"])
    errors = metrics.counter("errors", "Failed requests by endpoint and reason.", ["endpoint", "reason"])
    rate_limit_hits = metrics.counter(
        "rate_limit_hits", "Ximilar rate limit hits: 429 from Ximilar or the shared limiter.", ["source"]
    )
    searches = metrics.counter("searches", "Searches by backend and booster use.", ["backend", "booster"])
    knn_latency = metrics.histogram(
        "pgvector_knn_latency_ms", "pgvector kNN query time (ms).", prefixed=False
    )
    knn_results = metrics.gauge(
        "pgvector_knn_results_count",
        "SKUs returned by the latest pgvector kNN query.",
        prefixed=False,
        multiprocess_mode="mostrecent",
    )
    booster_rate = metrics.gauge(
        "ximilar_booster_rate",
        "Share of searches that called the Ximilar booster (all workers, since the counters were reset).",
        prefixed=False,
        multiprocess_mode="mostrecent",
    )

    pools = AsyncPools(
        settings.app_name, {"production_db": settings.production_db_url}, PoolConfig.from_settings(settings)
    )
    redis_client = aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_connect_timeout=2, socket_timeout=2
    )
    limiter = RedisRateLimiter(
        redis_client,
        "ximilar",
        rate=settings.ximilar_rate_limit_per_s,
        burst=settings.ximilar_rate_limit_burst,
    )
    ximilar_cfg = provider_config(
        settings,
        "ximilar",
        settings.ximilar_base_url,
        read_timeout_s=settings.ximilar_read_timeout_s,
        write_timeout_s=settings.ximilar_read_timeout_s,
    )
    ximilar_cfg = ximilar_cfg.with_(
        retry=RetryPolicy(
            max_attempts=settings.ximilar_max_attempts,
            backoff_base_s=settings.http_backoff_base_s,
            backoff_max_s=settings.http_backoff_max_s,
            max_retry_after_s=min(settings.http_max_retry_after_s, 5.0),
        )
    )
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.image_fetch_timeout_s, connect=settings.http_connect_timeout_s)
        async with pools.lifespan(app), httpx.AsyncClient(timeout=timeout, follow_redirects=True) as images:
            state["images"] = images
            state["ximilar"] = XimilarClient(
                ximilar_cfg,
                token=settings.ximilar_api_token.get_secret_value(),
                collection_id=settings.ximilar_collection_id,
                limiter=limiter,
                rate_limit_hits=rate_limit_hits,
                limiter_wait_s=settings.ximilar_rate_limit_wait_s,
            )
            state["embedder"] = AsyncProviderClient(
                provider_config(
                    settings,
                    "embedder",
                    settings.embedder_url,
                    read_timeout_s=settings.embedder_timeout_s,
                    retry=RetryPolicy(max_attempts=1),
                )
            )
            try:
                yield
            finally:
                await state["ximilar"].aclose()
                await state["embedder"].aclose()
                await redis_client.aclose()

    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    app = create_app(
        settings.app_name, settings, checks, metrics=metrics, version=__version__, lifespan=lifespan
    )
    app.state.db = pools

    async def load(url: str) -> tuple[ImageRef, Image.Image]:
        ref = ImageRef.parse(url)
        return ref, await fetch_image_async(state["images"], ref, max_bytes=settings.max_image_bytes)

    async def guarded(endpoint: str, work: Callable[[], Awaitable[T]]) -> T | JSONResponse:
        requests_total.labels(endpoint).inc()
        start = time.perf_counter()
        try:
            return await work()
        except ImageError as exc:
            errors.labels(endpoint, f"image_{exc.status}").inc()
            return _error(exc.status, exc.message)
        except RateLimitExceededError as exc:
            rate_limit_hits.labels("local").inc()
            errors.labels(endpoint, "rate_limited").inc()
            return _error(429, str(exc), {"Retry-After": "1"})
        except ProviderError as exc:
            errors.labels(endpoint, exc.provider).inc()
            return _error(502, str(exc))
        finally:
            latency[endpoint].observe((time.perf_counter() - start) * 1000)

    @app.post("/detect")
    async def detect(body: UrlBody) -> Any:
        async def work() -> dict[str, Any]:
            ref, image = await load(body.url)
            scale = max(1.0, max(image.size) / 2048)
            sent = jpeg_bytes(image, max_side=2048)
            objects = await state["ximilar"].detect(sent)
            items = []
            for obj in objects:
                prob = float(obj.get("prob", 0.0))
                if prob < settings.detect_min_confidence:
                    continue
                x1, y1, x2, y2 = (round(float(v) * scale) for v in obj["bound_box"])
                x1, y1 = max(0, x1), max(0, y1)
                x2, y2 = min(image.width, x2), min(image.height, y2)
                if x2 - x1 < 8 or y2 - y1 < 8:
                    continue
                items.append(
                    {
                        "crop_url": ref.with_region((x1, y1, x2 - x1, y2 - y1)),
                        "bbox": [x1, y1, x2, y2],
                        "category": str(obj.get("name", "item")).lower(),
                        "confidence": round(prob, 4),
                    }
                )
            return {"items": items, "width": image.width, "height": image.height}

        return await guarded("detect", work)

    @app.post("/tag")
    async def tag(body: UrlBody) -> Any:
        async def work() -> dict[str, Any]:
            _, image = await load(body.url)
            tags = await state["ximilar"].tag(jpeg_bytes(image))
            return {
                "type": _best(tags, "Subcategory", "Category"),
                "color": _best(tags, "Color"),
                "material": _best(tags, "Material"),
                "pattern": _best(tags, "Pattern", "Design"),
                "tags": tags,
            }

        return await guarded("tag", work)

    async def knn(crop_url: str, top_k: int) -> list[Candidate]:
        try:
            answer = await state["embedder"].post_json("/embed", json={"image_url": crop_url})
            vector = answer["embedding"]
        except ProviderError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                detail = exc.body or str(exc)
                raise ImageError(exc.status, f"embedder refused {crop_url}: {detail}"[:600]) from None
            raise
        literal = "[" + ",".join(f"{float(v):.7g}" for v in vector) + "]"
        start = time.perf_counter()
        async with pools["production_db"].connection() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL hnsw.ef_search = {int(settings.hnsw_ef_search)}")
            cur = await conn.execute(KNN_SQL, {"q": literal, "limit": top_k * settings.knn_photos_per_sku})
            rows = await cur.fetchall()
        knn_latency.observe((time.perf_counter() - start) * 1000)
        found: list[Candidate] = []
        for (
            sku,
            brand,
            image_url,
            dist,
            name,
            price,
            currency,
            category,
            colour,
            main,
            urls,
            in_stock,
        ) in rows:
            meta = {
                "name": name,
                "price": float(price) if price is not None else None,
                "currency": currency,
                "category": category,
                "colour": colour,
                "in_stock": in_stock,
                "matched_image": image_url,
            }
            images = list(urls or []) or [u for u in (main, image_url) if u]
            found.append(Candidate(sku, max(0.0, 1.0 - float(dist)), brand, images, meta, ["pgvector"]))
        merged = merge(found, top_k=top_k)
        knn_results.set(len(merged))
        return merged

    async def booster(crop_url: str, top_k: int) -> list[Candidate]:
        _, image = await load(crop_url)
        pairs = await state["ximilar"].search(jpeg_bytes(image), k=top_k)
        return [c for meta, score in pairs if (c := _ximilar_candidate(meta, score)) is not None]

    async def record_booster(backend: str, used: bool) -> None:
        searches.labels(backend, str(used).lower()).inc()
        try:
            pipe = redis_client.pipeline()
            pipe.hincrby("ximilar_gw:searches", "total", 1)
            pipe.hincrby("ximilar_gw:searches", "boosted", int(used))
            total, boosted = await pipe.execute()
            booster_rate.set(int(boosted) / max(1, int(total)))
        except Exception as exc:  # a metrics counter must never fail a search
            log.warning("booster counters not updated", extra={"error": str(exc)})

    @app.post("/search")
    async def search(body: SearchBody) -> Any:
        backend: Backend = settings.search_backend

        async def work() -> dict[str, Any] | JSONResponse:
            degraded: list[str] = []
            vector_hits: list[Candidate] = []
            ximilar_hits: list[Candidate] = []
            pg_info: dict[str, Any] = {}
            ran_pg = ran_x = False
            used_booster = False

            async def run_pg() -> None:
                nonlocal vector_hits, ran_pg
                ran_pg = True
                try:
                    vector_hits = await knn(body.crop_url, body.top_k)
                except ImageError:
                    raise
                except Exception as exc:
                    errors.labels("search", "pgvector").inc()
                    degraded.append(f"pgvector: {exc.__class__.__name__}: {exc}"[:300])

            async def run_x() -> None:
                nonlocal ximilar_hits, ran_x
                ran_x = True
                try:
                    ximilar_hits = await booster(body.crop_url, body.top_k)
                except (ImageError, RateLimitExceededError):
                    raise
                except ProviderError as exc:
                    errors.labels("search", "ximilar").inc()
                    degraded.append(str(exc)[:300])

            if backend == "ximilar":
                await run_x()
            elif backend == "dual":
                await asyncio.gather(run_pg(), run_x())
            else:
                await run_pg()
                scores = [c.score for c in vector_hits]
                pg_info = {
                    "count": len(vector_hits),
                    "top1": round(scores[0], 4) if scores else None,
                    "margin": round(scores[0] - scores[1], 4) if len(scores) > 1 else None,
                }
                unsure = needs_booster(
                    scores, threshold=settings.confidence_threshold, margin=settings.margin
                )
                pg_failed = any(d.startswith("pgvector") for d in degraded)
                if backend == "conditional" and (unsure or body.force_booster or pg_failed):
                    await run_x()
                elif backend == "pgvector" and pg_failed:
                    pass  # pgvector only: no Ximilar calls, the failure is reported below
            used_booster = ran_x and backend != "ximilar"
            if ran_x and backend == "dual":
                used_booster = True
            sources_failed = (not ran_pg or any(d.startswith("pgvector") for d in degraded)) and (
                not ran_x or any(d.startswith("ximilar") for d in degraded)
            )
            if sources_failed:
                errors.labels("search", "all_sources").inc()
                return _error(502, "search failed on every source: " + "; ".join(degraded))
            await record_booster(backend, used_booster)
            candidates = merge(vector_hits, ximilar_hits, top_k=body.top_k)
            return {
                "candidates": [c.as_json() for c in candidates],
                "backend": backend,
                "used_ximilar_booster": used_booster,
                "pgvector": pg_info,
                "degraded": degraded,
            }

        return await guarded("search", work)

    return app
