"""HTTP service of context_agent (spec 02 §15).

``POST /context`` → ``context_frame``: location (GeoResolver), environment (weather from WeatherAPI
cached 30 min, time context), cultural (static calendar cached 24 h, worded by sensitivity level),
opportunities (production ``events`` cached 1 h x compact_preferences). ``data_status`` tells,
per source, whether the part is ``fresh``, ``cached``, ``stale`` (the source failed; an older copy
is served) or ``absent`` (the part is null/empty) — the frame is returned either way.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from context_agent import __version__
from context_agent.cache import StaleCache
from context_agent.cultural_calendar import CulturalCalendar
from context_agent.event_scanner import EventScanner
from context_agent.geo import resolve
from context_agent.models import ContextRequest
from context_agent.opportunity_matcher import match
from context_agent.settings import ContextAgentSettings
from context_agent.time_context import time_context
from context_agent.weather_client import WeatherClient, weather_point
from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, create_app, redis_check

DEFAULT_TZ = "Asia/Dubai"


def create(settings: ContextAgentSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``context_agent.app:create``)."""
    settings = settings or ContextAgentSettings.load()
    pools = AsyncPools(
        settings.app_name, {"production_db": settings.production_db_url}, PoolConfig.from_settings(settings)
    )
    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    redis = aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_connect_timeout=0.2, socket_timeout=0.2
    )
    weather = WeatherClient(
        str(settings.weather_api_url), settings.weather_api_key, timeout_s=settings.weather_timeout_s
    )
    scanner = EventScanner(pools["production_db"], timeout_s=max(1.0, settings.db_pool_timeout_s / 5))
    weather_cache = StaleCache(
        redis,
        "ctx:weather",
        ttl_s=settings.weather_cache_ttl,
        stale_ttl_s=settings.weather_cache_ttl + settings.stale_max_age_s,
        wait_s=settings.weather_wait_ms / 1000,
    )
    events_cache = StaleCache(
        redis,
        "ctx:events",
        ttl_s=settings.events_cache_ttl,
        stale_ttl_s=settings.events_cache_ttl + settings.stale_max_age_s,
        wait_s=settings.events_wait_ms / 1000,
    )
    calendar = CulturalCalendar(ttl_s=settings.cultural_cache_ttl)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with pools.lifespan(app):
            try:
                yield
            finally:
                await weather.aclose()
                await redis.aclose()

    app = create_app(
        settings.app_name, settings, checks, version=__version__, lifespan=lifespan, asgi_metrics=True
    )
    app.state.db = pools
    m_status = app.state.metrics.counter(
        "source_status",
        "Context frame parts by source and status (fresh/cached/stale/absent).",
        ["source", "status"],
    )

    @app.post("/context", tags=["context"])
    async def context(req: ContextRequest) -> JSONResponse:
        now = (req.moment() or datetime.now(UTC)).astimezone(UTC)
        geo = resolve(req.lat, req.lng, req.mall_id, req.floor)
        mall = geo.mall
        tz = ZoneInfo(mall.timezone if mall else DEFAULT_TZ)
        local = now.astimezone(tz)
        country = mall.country if mall else "AE"
        prefs = req.compact_preferences

        point = weather_point(
            req.lat,
            req.lng,
            grid_deg=settings.weather_grid_deg,
            mall=(mall.id, mall.lat, mall.lng) if mall else None,
        )
        got_weather = await weather_cache.get(point.key, lambda: weather.current(point.lat, point.lng))
        if mall is not None:
            mall_id = mall.id
            got_events = await events_cache.get(mall_id, lambda: scanner.events(mall_id, now))
        else:
            got_events = None
        events: list[dict[str, Any]] = got_events.value if got_events and got_events.value else []
        live = [e for e in events if e["ends_at"] >= now.isoformat()]
        status = {
            "weather": got_weather.status,
            "events": got_events.status if got_events else "absent",
            "cultural": "static",
        }
        for source, st in status.items():
            m_status.labels(source, st).inc()
        errors = {k: v.error for k, v in (("weather", got_weather), ("events", got_events)) if v and v.error}
        frame = {
            "context_frame_id": str(uuid.uuid4()),
            "timestamp": local.isoformat(timespec="seconds"),
            "location": {
                "type": "mall" if mall else "outside",
                "mall_id": mall.id if mall else None,
                "mall_name": mall.name if mall else None,
                "near_store": geo.near_store.id if geo.near_store else None,
                "floor": geo.floor,
            },
            "environment": {
                "weather": got_weather.value,
                "time_context": time_context(local, mall, country),
            },
            "cultural": calendar.frame(
                local, country, req.lat, req.lng, tz, prefs.cultural_sensitivity_level
            ),
            "opportunities": match(live, prefs.favorite_brands, prefs.interests, prefs.allergies),
            "data_status": status,
            **({"data_errors": errors} if errors else {}),
        }
        return JSONResponse(frame)

    return app
