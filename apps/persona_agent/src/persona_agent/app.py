"""HTTP service of persona_agent (spec 02 §16).

- ``POST /persona`` → ``{persona_directive, voice_params, avatar_state, render_hints, debug}``
- ``POST /persona/feedback`` → ``{buffered: true, duplicate}``
- ``POST /persona/flush`` → ``{resolved, discarded, applied, stale_flushed, ...}``
- ``GET /persona/profile?user_id=`` → ``{persona_profile, relationship_stage, temp_blocks}``
- ``/health`` (shard + Redis), ``/health/live``, ``/metrics``.

Every request may carry the caller's persona_contract version (``contract_version`` in the body
or the ``X-Persona-Contract`` header); another major version is answered 409. Bad bodies are 422
naming the field; an unknown user gets the defaults.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar
from uuid import UUID

import redis.asyncio as aioredis
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from persona_agent import __version__
from persona_agent.canonicalizer import ProfileError
from persona_agent.concurrency import LockTimeoutError
from persona_agent.db import PersonaStore
from persona_agent.models import FeedbackRequest, FlushRequest, PersonaRequest
from persona_agent.service import PersonaService, ServiceConfig
from persona_agent.settings import PersonaAgentSettings
from persona_contract import CONTRACT_VERSION, ContractVersionError, assert_compatible
from unde_common.db import PoolConfig
from unde_common.health import Check, create_app, redis_check
from unde_common.shard_router import router_from_settings

ContractHeader = Annotated[str | None, Header(alias="X-Persona-Contract")]
M = TypeVar("M", bound=BaseModel)
#: where the inline body schema keeps its $defs (a JSON pointer into the OpenAPI document)
_REF = "#/paths/~1persona/post/requestBody/content/application~1json/schema/$defs/{model}"


async def parse_body(request: Request, model: type[M]) -> M:
    """The body validated straight from its bytes (``model_validate_json``: one pass, no dict in
    between); errors are FastAPI's usual 422 with ``loc`` starting at ``"body"``."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw) from None


def _unavailable(what: str, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"error": f"{what}_unavailable", "detail": f"{what} unavailable: {exc.__class__.__name__}; retry"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def create(settings: PersonaAgentSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``persona_agent.app:create``)."""
    settings = settings or PersonaAgentSettings.load()
    assert_compatible(settings.persona_contract_version)
    routing = aioredis.Redis.from_url(
        settings.shard_routing_redis_url.get_secret_value(), socket_connect_timeout=0.2, socket_timeout=0.2
    )
    router = router_from_settings(settings, routing, pool_config=PoolConfig.from_settings(settings))
    redis = aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_connect_timeout=1.0, socket_timeout=2.0
    )
    checks: dict[str, Check] = {
        **router.checks(settings.health_check_timeout_s),
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with router.lifespan(app):
            tracker = asyncio.create_task(service.track_invalidations(), name="persona-invalidations")
            app.state.tracker = tracker
            try:
                yield
            finally:
                await service.stop_tracking(tracker)
                await redis.aclose()
                await routing.aclose()

    app = create_app(
        settings.app_name, settings, checks, version=__version__, lifespan=lifespan, asgi_metrics=True
    )
    app.state.router = router
    service = PersonaService(
        PersonaStore(router),
        redis,
        ServiceConfig(
            cache_size=settings.profile_cache_size,
            db_timeout_s=settings.persona_db_timeout_s,
            db_retry_after_s=settings.persona_db_retry_after_s,
            stale_after_s=settings.persona_stale_after_s,
        ),
        app.state.metrics,
    )
    app.state.service = service

    @app.exception_handler(ContractVersionError)
    async def _contract(_: Request, exc: ContractVersionError) -> JSONResponse:
        return JSONResponse(
            {
                "error": "contract_incompatible",
                "detail": str(exc),
                "client_version": exc.client_version,
                "server_version": exc.server_version,
            },
            status_code=409,
        )

    @app.exception_handler(ProfileError)
    async def _profile(_: Request, exc: ProfileError) -> JSONResponse:
        loc = ["body", *exc.path.split(".")]
        return JSONResponse(
            {"detail": [{"loc": loc, "msg": str(exc), "type": "value_error"}]}, status_code=422
        )

    @app.exception_handler(RedisError)
    async def _redis(_: Request, exc: RedisError) -> JSONResponse:
        return _unavailable("redis", exc)

    @app.exception_handler(LockTimeoutError)
    async def _locked(_: Request, exc: LockTimeoutError) -> JSONResponse:
        return _unavailable("user_lock", exc)

    def check_contract(body_version: str | None, header: str | None) -> None:
        assert_compatible(body_version if body_version is not None else header)

    # the body is parsed from the raw bytes below; the OpenAPI still documents it (clients, fuzzing)
    persona_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PersonaRequest.model_json_schema(ref_template=_REF)}},
        }
    }

    @app.post("/persona", tags=["persona"], openapi_extra=persona_body)
    async def persona(request: Request) -> JSONResponse:
        """Body: :class:`persona_agent.models.PersonaRequest` (hot path: parsed from the raw bytes,
        header read directly, answer already plain JSON types — no FastAPI dependency solving or
        ``jsonable_encoder`` walk)."""
        req = await parse_body(request, PersonaRequest)
        check_contract(req.contract_version, request.headers.get("x-persona-contract"))
        return JSONResponse(await service.persona(req))

    @app.post("/persona/feedback", tags=["persona"])
    async def feedback(req: FeedbackRequest, x_persona_contract: ContractHeader = None) -> Any:
        check_contract(req.contract_version, x_persona_contract)
        try:
            return await service.feedback(req)
        except ValueError as exc:
            return JSONResponse(
                {
                    "detail": [
                        {"loc": ["body", "signal_data", "strength"], "msg": str(exc), "type": "value_error"}
                    ]
                },
                status_code=422,
            )

    @app.post("/persona/flush", tags=["persona"])
    async def flush(req: FlushRequest, x_persona_contract: ContractHeader = None) -> Any:
        check_contract(req.contract_version, x_persona_contract)
        try:
            return await service.flush(req)
        except (RedisError, LockTimeoutError):
            raise
        except Exception as exc:
            if "psycopg" in type(exc).__module__ or type(exc).__name__ == "PoolTimeout":
                return _unavailable("shard", exc)
            raise

    @app.get("/persona/profile", tags=["persona"])
    async def profile(user_id: Annotated[UUID, Query()], x_persona_contract: ContractHeader = None) -> Any:
        check_contract(None, x_persona_contract)
        try:
            return await service.profile(user_id)
        except Exception as exc:
            if "psycopg" in type(exc).__module__:
                return _unavailable("shard", exc)
            raise

    @app.get("/persona/contract", tags=["persona"])
    async def contract() -> dict[str, str]:
        return {"contract_version": CONTRACT_VERSION}

    return app
