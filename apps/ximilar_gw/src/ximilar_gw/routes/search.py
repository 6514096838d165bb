"""``POST /search``: the v5.1 dual retrieval of a crop. pgvector kNN over the catalog's photo
embeddings (the embedder embeds the crop) and/or the Ximilar visual search, as ``SEARCH_BACKEND``
says (see :mod:`ximilar_gw.search`); a source that fails is reported in ``degraded``, 502 only when
every source that ran failed."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from unde_common.http import ProviderError
from unde_common.images import ImageError, jpeg_bytes
from ximilar_gw.gateway import Gateway, GatewayDep, error_response
from ximilar_gw.rate_limiter import RateLimitExceededError
from ximilar_gw.search import Backend, Candidate, merge, needs_booster

log = logging.getLogger(__name__)

router = APIRouter()

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


class SearchBody(BaseModel):
    crop_url: str = Field(min_length=1, max_length=4096)
    category: str | None = Field(default=None, max_length=100)
    top_k: int = Field(default=10, ge=1, le=100)
    #: the orchestrator's re-query when the availability filter leaves too few candidates
    force_booster: bool = False


def _ximilar_candidate(meta: dict[str, Any], score: float) -> Candidate | None:
    sku = meta.get("sku_id") or meta.get("sku")
    if not sku:
        return None
    urls = meta.get("image_urls") or ([meta["_url"]] if meta.get("_url") else [])
    extra = {k: v for k, v in meta.items() if k not in ("_id", "_url", "_base64", "sku_id", "image_urls")}
    return Candidate(str(sku), score, meta.get("brand"), list(urls), extra, ["ximilar"])


async def _embed(gw: Gateway, crop_url: str) -> list[float]:
    """The embedder's vector of the crop; its 4xx (except 429) is the crop's fault: ImageError."""
    try:
        answer = await gw.embedder.post_json("/embed", json={"image_url": crop_url})
        vector: list[float] = answer["embedding"]
    except ProviderError as exc:
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
            detail = exc.body or str(exc)
            raise ImageError(exc.status, f"embedder refused {crop_url}: {detail}"[:600]) from None
        raise
    return vector


async def knn(gw: Gateway, crop_url: str, top_k: int) -> list[Candidate]:
    """The ``top_k`` catalog SKUs whose photos are nearest to the crop (pgvector HNSW)."""
    s = gw.settings
    vector = await _embed(gw, crop_url)
    literal = "[" + ",".join(f"{float(v):.7g}" for v in vector) + "]"
    start = time.perf_counter()
    async with gw.pools["production_db"].connection() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL hnsw.ef_search = {int(s.hnsw_ef_search)}")
        cur = await conn.execute(KNN_SQL, {"q": literal, "limit": top_k * s.knn_photos_per_sku})
        rows = await cur.fetchall()
    gw.metrics.knn_latency.observe((time.perf_counter() - start) * 1000)
    found: list[Candidate] = []
    for sku, brand, image_url, dist, name, price, currency, category, colour, main, urls, in_stock in rows:
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
    gw.metrics.knn_results.set(len(merged))
    return merged


async def booster(gw: Gateway, crop_url: str, top_k: int) -> list[Candidate]:
    """Ximilar's visual search of the crop in the catalog collection."""
    _, image = await gw.load(crop_url)
    pairs = await gw.ximilar.search(jpeg_bytes(image), k=top_k)
    return [c for meta, score in pairs if (c := _ximilar_candidate(meta, score)) is not None]


async def record_booster(gw: Gateway, backend: str, used: bool) -> None:
    """Count the search; ``ximilar_booster_rate`` from counters all workers share in Redis."""
    gw.metrics.searches.labels(backend, str(used).lower()).inc()
    try:
        pipe = gw.redis.pipeline()
        pipe.hincrby("ximilar_gw:searches", "total", 1)
        pipe.hincrby("ximilar_gw:searches", "boosted", int(used))
        total, boosted = await pipe.execute()
        gw.metrics.booster_rate.set(int(boosted) / max(1, int(total)))
    except Exception as exc:  # a metrics counter must never fail a search
        log.warning("booster counters not updated", extra={"error": str(exc)})


class _Sources:
    """One search's sources: what each found, whether it ran, and what failed (``degraded``).
    Image and rate-limit errors are the request's fault and propagate."""

    def __init__(self, gw: Gateway, body: SearchBody) -> None:
        self.gw = gw
        self.body = body
        self.degraded: list[str] = []
        self.vector_hits: list[Candidate] = []
        self.ximilar_hits: list[Candidate] = []
        self.ran_pg = self.ran_x = False

    async def pgvector(self) -> None:
        self.ran_pg = True
        try:
            self.vector_hits = await knn(self.gw, self.body.crop_url, self.body.top_k)
        except ImageError:
            raise
        except Exception as exc:
            self.gw.metrics.errors.labels("search", "pgvector").inc()
            self.degraded.append(f"pgvector: {exc.__class__.__name__}: {exc}"[:300])

    async def ximilar(self) -> None:
        self.ran_x = True
        try:
            self.ximilar_hits = await booster(self.gw, self.body.crop_url, self.body.top_k)
        except (ImageError, RateLimitExceededError):
            raise
        except ProviderError as exc:
            self.gw.metrics.errors.labels("search", "ximilar").inc()
            self.degraded.append(str(exc)[:300])

    def failed(self, source: str) -> bool:
        return any(d.startswith(source) for d in self.degraded)

    def all_failed(self) -> bool:
        """No source that ran answered (a source that did not run counts as failed)."""
        pg_down = not self.ran_pg or self.failed("pgvector")
        return pg_down and (not self.ran_x or self.failed("ximilar"))


@router.post("/search")
async def search(body: SearchBody, gw: GatewayDep) -> Any:
    s = gw.settings
    backend: Backend = s.search_backend

    async def work() -> dict[str, Any] | JSONResponse:
        sources = _Sources(gw, body)
        pg_info: dict[str, Any] = {}
        if backend == "ximilar":
            await sources.ximilar()
        elif backend == "dual":
            await asyncio.gather(sources.pgvector(), sources.ximilar())
        else:
            await sources.pgvector()
            scores = [c.score for c in sources.vector_hits]
            pg_info = {
                "count": len(sources.vector_hits),
                "top1": round(scores[0], 4) if scores else None,
                "margin": round(scores[0] - scores[1], 4) if len(scores) > 1 else None,
            }
            unsure = needs_booster(scores, threshold=s.confidence_threshold, margin=s.margin)
            # conditional: Ximilar when pgvector is unsure, asked to, or down; pgvector only: never
            if backend == "conditional" and (unsure or body.force_booster or sources.failed("pgvector")):
                await sources.ximilar()
        used_booster = sources.ran_x and backend != "ximilar"
        if sources.all_failed():
            gw.metrics.errors.labels("search", "all_sources").inc()
            return error_response(502, "search failed on every source: " + "; ".join(sources.degraded))
        await record_booster(gw, backend, used_booster)
        candidates = merge(sources.vector_hits, sources.ximilar_hits, top_k=body.top_k)
        return {
            "candidates": [c.as_json() for c in candidates],
            "backend": backend,
            "used_ximilar_booster": used_booster,
            "pgvector": pg_info,
            "degraded": sources.degraded,
        }

    return await gw.guarded("search", work)
