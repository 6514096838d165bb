"""FastAPI app factory with ``/health``, ``/health/live`` and ``/metrics``, and a uvicorn runner.

    app = create_app("ximilar_gw", settings, checks={"production_db": lambda: acheck(pool)})

- ``GET /health/live`` — 200 ``{"status": "ok"}`` while the process serves requests.
- ``GET /health`` — runs every named check concurrently, each bounded by
  ``settings.health_check_timeout_s``; 200 when all pass, 503 otherwise, with
  ``{"status": "ok"|"fail", "app": ..., "checks": {"<name>": {"status", "duration_ms", "reason"?}}}``
  (``reason``: ``timeout`` or ``error``). A check is a callable returning ``None`` (or an awaitable
  of it) and raising on failure. The answer never holds an exception's text, a host name or an
  address: those go to the log (``health check failed``, with the check's name).
- ``GET /metrics`` — the app's Prometheus registry, plus request counters/latency that a
  middleware records for every route (``<prefix>_http_requests_total``,
  ``<prefix>_http_request_duration_seconds``).

Who may call: :class:`unde_common.auth.ServiceAuth` (/health and /metrics: the monitoring caller
only; every other route: the callers of ``settings.service_callers`` only).

``create_app(..., asgi_metrics=True)`` records the same two metrics with a plain ASGI middleware
(:class:`RequestMetrics`) instead of Starlette's ``BaseHTTPMiddleware``: no extra task, task group
and streaming response per request — about a third of the CPU of a small JSON endpoint
(measured with py-spy on persona_agent; see apps/persona_agent/README.md).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from unde_common.auth import ServiceAuth, log_auth_config
from unde_common.logging import configure_logging
from unde_common.metrics import CONTENT_TYPE_LATEST, AppMetrics
from unde_common.settings import HttpServiceSettings
from unde_common.web import RequestBodyGuard, install_error_handlers

__all__ = ["Check", "RequestMetrics", "create_app", "redis_check", "run_checks", "serve"]

Check = Callable[[], Awaitable[None] | None]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
log = logging.getLogger("unde_common.health")


async def _run_one(check: Check, timeout_s: float, name: str = "") -> dict[str, Any]:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            if inspect.iscoroutinefunction(check):
                await check()
            else:
                result = await run_in_threadpool(check)
                if inspect.isawaitable(result):
                    await result
        status: dict[str, Any] = {"status": "ok"}
    except TimeoutError:
        status = {"status": "fail", "reason": "timeout"}
        log.warning("health check failed", extra={"check": name, "error": f"timed out after {timeout_s:g}s"})
    except Exception as exc:
        # the text may name a host, an address or a path: the log gets it, the answer does not
        status = {"status": "fail", "reason": "error"}
        log.warning(
            "health check failed", extra={"check": name, "error": f"{exc.__class__.__name__}: {exc}"[:500]}
        )
    status["duration_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return status


async def run_checks(checks: Mapping[str, Check], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Run the checks concurrently; a mapping of name → result."""
    names = list(checks)
    results = await asyncio.gather(*(_run_one(checks[n], timeout_s, n) for n in names))
    return dict(zip(names, results, strict=True))


def redis_check(url: SecretStr | str, *, timeout_s: float = 2.0) -> Check:
    """A check that PINGs a Redis server (a fresh connection each time, closed after)."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url

    async def ping() -> None:
        client = aioredis.Redis.from_url(raw, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            if not await client.ping():
                raise RuntimeError("PING did not answer PONG")
        finally:
            await client.aclose()

    return ping


def _route_template(request: Request) -> str:
    """The matched route's path template (``/items/{id}``), so labels stay low-cardinality."""
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return str(getattr(route, "path", request.url.path))
    return "<unmatched>"


class RequestMetrics:
    """Pure ASGI middleware recording ``http_requests_total`` and ``http_request_duration_seconds``
    (labels method, route template, status), like the ``BaseHTTPMiddleware`` of :func:`create_app`
    but without its per-request task group. Route templates of parameterless paths are memoised."""

    def __init__(self, app: Any, requests_total: Any, duration: Any, *, memo_size: int = 256) -> None:
        self.app = app
        self.requests_total = requests_total
        self.duration = duration
        self.memo_size = memo_size
        self._memo: dict[str, str] = {}

    def _template(self, scope: Any) -> str:
        path: str = scope["path"]
        hit = self._memo.get(path)
        if hit is not None:
            return hit
        template = "<unmatched>"
        for route in scope["app"].router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                template = str(getattr(route, "path", path))
                break
        if template == path and len(self._memo) < self.memo_size:
            self._memo[path] = template
        return template

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._template(scope)
        start = time.perf_counter()
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if route != "/metrics":
                method = scope["method"]
                self.requests_total.labels(method, route, str(status)).inc()
                self.duration.labels(method, route).observe(time.perf_counter() - start)


def create_app(
    name: str,
    settings: HttpServiceSettings,
    checks: Mapping[str, Check] | None = None,
    *,
    metrics: AppMetrics | None = None,
    version: str = "0",
    lifespan: Lifespan | None = None,
    asgi_metrics: bool = False,
    body_limits: Mapping[str, int] | None = None,
    business_auth: bool = True,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app with the UNDE health and metrics endpoints; add the app's routes to it.

    Every request passes :class:`unde_common.web.RequestBodyGuard` (strict JSON, bodies up to
    ``settings.max_request_bytes``, or ``body_limits[path]`` for a route that needs another limit),
    and :func:`unde_common.web.install_error_handlers` answers a store that is down with 503 +
    ``Retry-After`` and any other unhandled exception with a neutral 500.

    Every request passes :class:`unde_common.auth.ServiceAuth` first (before the body is read):
    ``settings.service_callers`` may call the app's routes, ``settings.service_monitoring_sha256``
    /health and /metrics. ``business_auth=False`` leaves the business routes to the app (the API
    gateway's public API, whose users authenticate there); /health and /metrics stay monitoring-only.

    ``asgi_metrics=True``: record the request metrics with :class:`RequestMetrics` (cheaper)."""
    app_metrics = metrics or AppMetrics(name, version=version)
    named_checks: dict[str, Check] = dict(checks or {})
    requests_total = app_metrics.counter(
        "http_requests",
        "HTTP requests served, by method, route template and status code.",
        ["method", "route", "status"],
    )
    duration = app_metrics.histogram(
        "http_request_duration_seconds",
        "HTTP request latency in seconds, by method and route template.",
        ["method", "route"],
    )

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

    app = FastAPI(title=name, version=version, lifespan=_lifespan, **fastapi_kwargs)
    app.state.settings = settings
    app.state.metrics = app_metrics
    app.state.checks = named_checks
    install_error_handlers(app, retry_after_s=settings.store_retry_after_s)
    # added first, so it runs inside the metrics middleware (its 413/400/422 answers are counted)
    app.add_middleware(RequestBodyGuard, default=settings.max_request_bytes, limits=body_limits)
    # outside the body guard (an unknown caller's body is never read), inside the metrics (refusals
    # are counted)
    app.add_middleware(
        ServiceAuth,
        callers=settings.service_callers,
        monitoring_sha256=settings.service_monitoring_sha256,
        app_name=name,
        business=business_auth,
    )
    log_auth_config(
        name, settings.service_callers, settings.service_monitoring_sha256, business=business_auth
    )

    if asgi_metrics:
        app.add_middleware(RequestMetrics, requests_total=requests_total, duration=duration)

    async def _record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        route = _route_template(request)
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            if route != "/metrics":
                requests_total.labels(request.method, route, str(status)).inc()
                duration.labels(request.method, route).observe(time.perf_counter() - start)

    if not asgi_metrics:
        app.middleware("http")(_record)

    @app.get("/health/live", tags=["ops"])
    async def live() -> dict[str, str]:
        return {"status": "ok", "app": name}

    @app.get("/health", tags=["ops"])
    async def health() -> JSONResponse:
        results = await run_checks(app.state.checks, settings.health_check_timeout_s)
        ok = all(r["status"] == "ok" for r in results.values())
        body = {"status": "ok" if ok else "fail", "app": name, "version": version, "checks": results}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(app_metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(factory: str, settings: HttpServiceSettings) -> None:
    """Run ``factory`` (``"pkg.app:create"``, a zero-argument callable returning the app) with uvicorn
    on ``settings.host:settings.port`` with ``settings.workers`` processes, logging as JSON."""
    configure_logging(settings.app_name, settings.log_level)
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )
