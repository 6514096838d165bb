"""HTTP service of llm_reranker: every LLM call of the recognition pipeline (spec 02 §10), Gemini.

- ``POST /tag {"url"}`` (a crop, ``#xywh=`` regions allowed) → ``{"style", "occasion",
  "brand_style", "season"}``;
- ``POST /rerank {"crop_url", "candidates": [{"sku_id", "score", "image_urls", "metadata"}],
  "tags"}`` → ``{"ranked": [{"sku_id", "score", "visual", "semantic", "reason", "reranked"}],
  "failed"}``: one Gemini call per candidate (the crop + the candidate's best catalog photo, the
  one the retrieval matched, else its first), all in parallel; ``score`` = VISUAL_WEIGHT (0.7) x
  visual + (1 - 0.7) x semantic. A candidate whose call failed keeps its retrieval score
  (``reranked: false``); if every call failed the answer is 502.

Errors: 422 malformed body or bad/unreachable crop URL, 413/415 image, 502 Gemini failed.
Metrics (spec 01 §19): ``llm_reranker_latency_ms{endpoint}``, ``llm_reranker_errors_total``,
``llm_reranker_requests_total``, ``llm_reranker_cost_usd`` (USD spent since start, from Gemini's
token counts, thought tokens at the output price), ``llm_reranker_tokens_total{kind}`` (input,
output = candidates + thoughts, thoughts).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from llm_reranker import __version__
from llm_reranker.gemini import GeminiAnswer, GeminiClient
from llm_reranker.settings import LlmRerankerSettings
from unde_common.health import create_app
from unde_common.http import ProviderError, RetryPolicy, provider_config
from unde_common.images import (
    FetchPolicy,
    ImageError,
    ImageRef,
    async_image_client,
    fetch_image_async,
    jpeg_bytes,
)
from unde_common.metrics import AppMetrics

TAG_PROMPT = (
    "You are a fashion stylist. Look at this clothing item photographed on the street and describe "
    "what a classifier cannot: its style (e.g. streetwear, preppy, minimalist), occasion (office, "
    "date, casual...), brand_style (cut/fit: oversized, cropped, fitted...) and season. Answer only "
    'JSON: {"style": str, "occasion": str, "brand_style": str, "season": str}.'
)
RERANK_PROMPT = (
    "Image 1 is a clothing item photographed on the street; image 2 is a catalog photo of SKU "
    "{sku} ({meta}). Is it the same item? Compare silhouette, colour, texture and details. "
    "Attributes of the street item: {tags}. Answer only JSON: "
    '{{"visual": 0..1 (same item?), "semantic": 0..1 (attributes and style agree?), "reason": str}}.'
)
TAG_KEYS = ("style", "occasion", "brand_style", "season")


class UrlBody(BaseModel):
    url: str = Field(min_length=1, max_length=4096)


class CandidateIn(BaseModel):
    sku_id: str = Field(min_length=1, max_length=100)
    score: float = Field(default=0.0, ge=0, le=1)
    image_urls: list[str] = Field(default_factory=list, max_length=20)
    metadata: dict[str, Any] = Field(default_factory=dict)


class RerankBody(BaseModel):
    crop_url: str = Field(min_length=1, max_length=4096)
    candidates: list[CandidateIn] = Field(max_length=50)
    tags: dict[str, Any] = Field(default_factory=dict)


def _provider_detail(exc: ProviderError) -> str:
    """The error, with the provider's own message when its body has one (Google error bodies:
    ``{"error": {"message"}}``) — e.g. which model id is not found."""
    try:
        message = json.loads(exc.body or "")["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return str(exc)
    return f"{exc}: {str(message)[:300]}"


def _unit(value: Any) -> float:
    return max(0.0, min(1.0, float(value)))


def create(settings: LlmRerankerSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``llm_reranker.app:create``)."""
    settings = settings or LlmRerankerSettings.load()
    metrics = AppMetrics(settings.app_name, version=__version__)
    latency = metrics.histogram("latency_ms", "Endpoint latency (ms).", ["endpoint"])
    requests_total = metrics.counter("requests", "Requests by endpoint.", ["endpoint"])
    errors = metrics.counter(
        "errors", "Failed requests / Gemini calls by endpoint and reason.", ["endpoint", "reason"]
    )
    cost = metrics.gauge(
        "cost_usd", "Gemini spend in USD since start (token counts x list price).", multiprocess_mode="sum"
    )
    tokens = metrics.counter("tokens", "Gemini tokens by kind.", ["kind"])
    state: dict[str, Any] = {}
    image_policy = FetchPolicy.from_settings(settings)
    config = provider_config(
        settings,
        "gemini",
        settings.gemini_base_url,
        read_timeout_s=settings.gemini_read_timeout_s,
        write_timeout_s=settings.gemini_read_timeout_s,
        retry=RetryPolicy(
            max_attempts=settings.gemini_max_attempts,
            backoff_base_s=settings.http_backoff_base_s,
            backoff_max_s=settings.http_backoff_max_s,
            max_retry_after_s=min(settings.http_max_retry_after_s, 5.0),
        ),
        max_connections=max(20, settings.rerank_parallel * 2),
        deadline_s=settings.gemini_deadline_s,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with async_image_client(settings, settings.image_fetch_timeout_s) as images:
            state["images"] = images
            state["gemini"] = GeminiClient(
                config,
                api_key=settings.gemini_api_key.get_secret_value(),
                model=settings.gemini_model,
                thinking_level=settings.gemini_thinking_level,
            )
            try:
                yield
            finally:
                await state["gemini"].aclose()

    app = create_app(settings.app_name, settings, metrics=metrics, version=__version__, lifespan=lifespan)

    def account(answer: GeminiAnswer) -> None:
        # output_tokens includes the thought tokens (billed as output); "thoughts" shows their share
        tokens.labels("input").inc(answer.input_tokens)
        tokens.labels("output").inc(answer.output_tokens)
        tokens.labels("thoughts").inc(answer.thought_tokens)
        cost.inc(
            answer.input_tokens * settings.gemini_input_usd_per_mtok / 1e6
            + answer.output_tokens * settings.gemini_output_usd_per_mtok / 1e6
        )

    async def load(url: str) -> bytes:
        ref = ImageRef.parse(url)
        image = await fetch_image_async(state["images"], ref, image_policy)
        return jpeg_bytes(image)

    def fail(endpoint: str, status: int, reason: str, message: str) -> JSONResponse:
        errors.labels(endpoint, reason).inc()
        return JSONResponse({"detail": message}, status_code=status)

    @app.post("/tag")
    async def tag(body: UrlBody) -> Any:
        requests_total.labels("tag").inc()
        start = time.perf_counter()
        try:
            crop = await load(body.url)
            answer = await state["gemini"].generate_json(TAG_PROMPT, [crop])
        except ImageError as exc:
            return fail("tag", exc.status, f"image_{exc.status}", exc.message)
        except ProviderError as exc:
            return fail("tag", 502, "gemini", _provider_detail(exc))
        finally:
            latency.labels("tag").observe((time.perf_counter() - start) * 1000)
        account(answer)
        return {k: (str(answer.data[k]) if answer.data.get(k) is not None else None) for k in TAG_KEYS}

    async def rerank_one(
        crop: bytes, cand: CandidateIn, tags: dict[str, Any], gate: asyncio.Semaphore
    ) -> Any:
        photo = cand.metadata.get("matched_image") or (cand.image_urls[0] if cand.image_urls else None)
        if not photo:
            raise ImageError(422, f"candidate {cand.sku_id} has no catalog photo")
        async with gate:
            catalog = await load(str(photo))
            meta = ", ".join(
                f"{k}: {v}" for k, v in cand.metadata.items() if k in ("brand", "name", "category", "colour")
            )
            prompt = RERANK_PROMPT.format(sku=cand.sku_id, meta=meta or "no metadata", tags=tags or "unknown")
            answer: GeminiAnswer = await state["gemini"].generate_json(prompt, [crop, catalog])
        account(answer)
        visual, semantic = _unit(answer.data["visual"]), _unit(answer.data["semantic"])
        return visual, semantic, str(answer.data.get("reason", ""))[:300]

    @app.post("/rerank")
    async def rerank(body: RerankBody) -> Any:
        requests_total.labels("rerank").inc()
        start = time.perf_counter()
        try:
            try:
                crop = await load(body.crop_url)
            except ImageError as exc:
                return fail("rerank", exc.status, f"image_{exc.status}", exc.message)
            candidates = body.candidates[: settings.rerank_max_candidates]
            if not candidates:
                return {"ranked": [], "failed": 0}
            gate = asyncio.Semaphore(settings.rerank_parallel)
            results = await asyncio.gather(
                *(rerank_one(crop, c, body.tags, gate) for c in candidates), return_exceptions=True
            )
            ranked: list[dict[str, Any]] = []
            failures: list[str] = []
            w = settings.visual_weight
            for cand, result in zip(candidates, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, (ProviderError, ImageError, KeyError, TypeError, ValueError)):
                        raise result
                    errors.labels("rerank", "candidate").inc()
                    detail = _provider_detail(result) if isinstance(result, ProviderError) else str(result)
                    failures.append(f"{cand.sku_id}: {detail}"[:400])
                    ranked.append({"sku_id": cand.sku_id, "score": cand.score, "reranked": False})
                    continue
                visual, semantic, reason = result
                ranked.append(
                    {
                        "sku_id": cand.sku_id,
                        "score": round(w * visual + (1 - w) * semantic, 4),
                        "visual": visual,
                        "semantic": semantic,
                        "reason": reason,
                        "reranked": True,
                    }
                )
            if len(failures) == len(candidates):
                return fail("rerank", 502, "gemini", "every rerank call failed: " + "; ".join(failures[:3]))
            ranked.sort(key=lambda r: -float(r["score"]))
            return {"ranked": ranked, "failed": len(failures), "errors": failures}
        finally:
            latency.labels("rerank").observe((time.perf_counter() - start) * 1000)

    return app
