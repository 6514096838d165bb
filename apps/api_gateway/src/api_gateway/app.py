"""HTTP service of api_gateway: the users' only door (behind nginx on local-app).

``/health`` (production DB, the shard primaries, the gateway Redis, the dialogue broker),
``/health/live`` and ``/metrics`` answer monitoring only; everything else is the public API under
``/api/v1`` (routes_auth, routes_chat, routes_media, routes_account), authenticated with the user
tokens of :mod:`api_gateway.auth`.

The lifespan builds the :class:`~api_gateway.resources.Resources` of the process (pools, shard
router with the production ``routing_table`` as the assignment lookup, Redis clients, dialogue
producer, rate limiter, analytics sender), then calls ``startup(resources)`` of each route module
that has one (``shutdown`` in reverse order on the way out). A route module may also define
``body_limits(settings) -> {path: bytes}`` for routes whose bodies exceed ``MAX_REQUEST_BYTES``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api_gateway import __version__, routes_account, routes_auth, routes_chat, routes_media
from api_gateway.analytics import Analytics
from api_gateway.dialogue import DialogueClient, DialogueRejectedError, DialogueUnavailableError
from api_gateway.ratelimit import RateLimitedError, RateLimiter
from api_gateway.resources import ApiError, Resources
from api_gateway.settings import ApiGatewaySettings
from unde_common.db import AsyncPools, PoolConfig
from unde_common.health import Check, create_app, redis_check
from unde_common.metrics import AppMetrics
from unde_common.shard_router import router_from_settings, routing_table_lookup

log = logging.getLogger("api_gateway")

API_PREFIX = "/api/v1"
#: the route modules, in the order their startup runs
ROUTE_MODULES: tuple[ModuleType, ...] = (routes_auth, routes_chat, routes_media, routes_account)


def _hook(module: ModuleType, name: str) -> Callable[[Resources], Awaitable[None]] | None:
    hook = getattr(module, name, None)
    return hook if inspect.iscoroutinefunction(hook) else None


def install_api_errors(app: FastAPI) -> None:
    """The gateway's own errors as ``{"error", "detail"}`` JSON with their status and headers."""

    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def rate_limited(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RateLimitedError)
        return JSONResponse(
            {
                "error": "rate_limited",
                "detail": f"too many {exc.bucket} requests; retry in {exc.retry_after_s} s",
            },
            status_code=429,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DialogueUnavailableError)
        return JSONResponse(
            {"error": "dialogue_unavailable", "detail": exc.reason},
            status_code=503,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    async def rejected(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DialogueRejectedError)
        status = 422 if exc.code == "TurnRejectedError" else 502
        code = "rejected" if status == 422 else "dialogue_failed"
        detail = exc.message if status == 422 else "the dialogue failed; retry with the same message ids"
        return JSONResponse({"error": code, "detail": detail}, status_code=status)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RateLimitedError, rate_limited)
    app.add_exception_handler(DialogueUnavailableError, unavailable)
    app.add_exception_handler(DialogueRejectedError, rejected)


def create(settings: ApiGatewaySettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``api_gateway.app:create``)."""
    settings = settings or ApiGatewaySettings.load()
    config = PoolConfig.from_settings(settings)
    pools = AsyncPools(settings.app_name, {"production_db": settings.production_db_url}, config)
    routing = aioredis.Redis.from_url(
        settings.shard_routing_redis_url.get_secret_value(), socket_connect_timeout=1, socket_timeout=1
    )
    router = router_from_settings(
        settings, routing, pool_config=config, assignment=routing_table_lookup(pools["production_db"])
    )
    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
        **router.checks(settings.health_check_timeout_s),
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    body_limits: dict[str, int] = {}
    for module in ROUTE_MODULES:
        limits = getattr(module, "body_limits", None)
        if callable(limits):
            body_limits.update({API_PREFIX + path: n for path, n in limits(settings).items()})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics: AppMetrics = app.state.metrics
        redis = aioredis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_connect_timeout=1, socket_timeout=2
        )
        res = Resources(
            settings=settings,
            pools=pools,
            router=router,
            redis=redis,
            dialogue=DialogueClient(settings, redis, metrics),
            rate_limiter=RateLimiter(redis, dict(settings.rate_limits), metrics),
            analytics=Analytics(settings, metrics),
            metrics=metrics,
        )
        app.state.resources = res
        started: list[ModuleType] = []
        await pools.open()
        await res.analytics.start()
        try:
            for module in ROUTE_MODULES:
                hook = _hook(module, "startup")
                if hook is not None:
                    await hook(res)
                started.append(module)
            yield
        finally:
            for module in reversed(started):
                hook = _hook(module, "shutdown")
                if hook is not None:
                    try:
                        await hook(res)
                    except Exception:
                        log.exception("shutdown of %s failed", module.__name__)
            await res.analytics.close()
            await res.dialogue.close()
            await router.close()
            await pools.close()
            await redis.aclose()
            await routing.aclose()

    # business_auth=False: the gateway's routes are the public API behind nginx (users authenticate
    # here, not with a service token); /health and /metrics still answer only monitoring
    app = create_app(
        settings.app_name,
        settings,
        checks,
        version=__version__,
        lifespan=lifespan,
        business_auth=False,
        body_limits=body_limits or None,
    )
    app.state.db = pools
    install_api_errors(app)
    for module in ROUTE_MODULES:
        router_: Any = module.router
        app.include_router(router_, prefix=API_PREFIX)
    return app
