"""HTTP service of mood_agent (spec 02 §11).

``POST /analyze`` ``{user_id, text, previous_mood_frame_id, prosody?, mode?}`` →
``{mood_frame, analysis}``: mood_frame is spec 02 §11's JSON; analysis says which classifier
answered, the latency and whether the voice contradicted the text. Plus ``/health`` (Redis),
``/health/live``, ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from mood_agent import __version__
from mood_agent.analyzer import build_frame
from mood_agent.classifier import HedgedClassifier, LoopLag
from mood_agent.clients import DeepSeekClient, GeminiClient, MoodLLM
from mood_agent.models import Analysis, AnalyzeRequest, AnalyzeResponse
from mood_agent.settings import MoodAgentSettings
from mood_agent.store import FrameStore
from unde_common.health import Check, create_app, redis_check


def _llm(settings: MoodAgentSettings, provider: str, model: str, key: object) -> MoodLLM:
    from pydantic import SecretStr

    assert isinstance(key, SecretStr)
    timeout = max(0.05, settings.mood_llm_budget_ms / 1000)
    if provider == "deepseek":
        return DeepSeekClient(str(settings.deepseek_base_url), key, model, timeout_s=timeout)
    return GeminiClient(str(settings.gemini_base_url), key, model, timeout_s=timeout)


def create(settings: MoodAgentSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``mood_agent.app:create``)."""
    settings = settings or MoodAgentSettings.load()
    checks: dict[str, Check] = {
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    redis = aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_connect_timeout=0.2, socket_timeout=0.2
    )
    llms: list[MoodLLM] = []
    if settings.mood_llm_enabled:
        llms = [
            _llm(settings, settings.mood_llm_provider, settings.mood_llm_model, settings.mood_llm_api_key),
            _llm(
                settings,
                settings.mood_fallback_provider,
                settings.mood_fallback_model,
                settings.mood_fallback_api_key,
            ),
        ]
    lag = LoopLag()
    classifier = HedgedClassifier(
        llms,
        budget_s=settings.mood_llm_budget_ms / 1000,
        hedge_after_s=settings.mood_hedge_after_ms / 1000,
        max_inflight=settings.mood_llm_max_inflight,
        lag=lag,
        shed_lag_s=settings.mood_shed_lag_ms / 1000,
    )
    store = FrameStore(
        redis, ttl_s=settings.mood_frame_ttl_s, timeout_s=settings.mood_redis_timeout_ms / 1000
    )
    deadline_s = settings.mood_deadline_ms / 1000
    reserve_s = settings.mood_reserve_ms / 1000

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        monitor = asyncio.create_task(lag.run(), name="mood-loop-lag")
        try:
            yield
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
            await classifier.aclose()
            await redis.aclose()

    app = create_app(
        settings.app_name, settings, checks, version=__version__, lifespan=lifespan, asgi_metrics=True
    )
    metrics = app.state.metrics
    m_frames = metrics.counter("frames", "Mood frames produced, by classifier.", ["classifier"])
    m_errors = metrics.counter("provider_errors", "LLM classification failures, by provider.", ["provider"])
    m_llm_inflight = metrics.gauge("llm_inflight", "LLM calls in flight in this worker (last seen).")
    m_lag = metrics.gauge("event_loop_lag_seconds", "Event loop lag of this worker (decayed, last seen).")
    m_flags = metrics.counter("flags", "Spikes, reversals, topic shifts and voice/text mismatches.", ["flag"])

    @app.post("/analyze", tags=["mood"])
    async def analyze(req: AnalyzeRequest) -> AnalyzeResponse:
        start = time.perf_counter()
        user = str(req.user_id)
        prev_id = str(req.previous_mood_frame_id) if req.previous_mood_frame_id else None
        prev, prev_error = await store.previous(user, prev_id)
        # the loop's current lag estimates how long this request already waited before the
        # handler ran (accepted, parsed, queued behind other callbacks): it counts against the deadline
        left = deadline_s - reserve_s - (time.perf_counter() - start) - lag.lag_s
        verdict = await classifier.classify(req.text, req.mode, budget_s=left)
        frame, keep, spike, mismatch = build_frame(
            verdict.result,
            prev,
            req.prosody,
            alpha=settings.mood_smoothing_factor,
            spike_threshold=settings.mood_spike_threshold,
        )
        save_error = None if req.is_partial else await store.save(user, keep)
        errors = [*verdict.errors, *(e for e in (prev_error, save_error) if e)]
        m_frames.labels(verdict.source).inc()
        for err in verdict.errors:
            m_errors.labels(err.split(":", 1)[0]).inc()
        m_llm_inflight.set(classifier.inflight)
        m_lag.set(lag.lag_s)
        for flag, on in (
            ("spike", spike),
            ("emotional_reversal", frame.topic.emotional_reversal),
            ("topic_shift", frame.topic.shift_detected),
            ("voice_text_mismatch", mismatch),
        ):
            if on:
                m_flags.labels(flag).inc()
        return AnalyzeResponse(
            mood_frame=frame,
            analysis=Analysis(
                classifier=verdict.source,  # type: ignore[arg-type]
                latency_ms=round((time.perf_counter() - start) * 1000, 2),
                topic_label=verdict.result.topic,
                spike=spike,
                voice_text_mismatch=mismatch,
                provider_errors=errors,
            ),
        )

    app.state.classifier = classifier
    return app
