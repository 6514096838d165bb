"""What every route of the gateway shares, built once per process by the app's lifespan.

    @router.post("/thing")
    async def thing(user: AuthUser = Depends(current_user), res: Resources = Depends(resources)): ...

Routes answer errors by raising :class:`ApiError`: the app renders it as
``{"error": "<code>", "detail": "<what is wrong, naming the field>"}`` with its status and headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from api_gateway.analytics import Analytics
    from api_gateway.dialogue import DialogueClient
    from api_gateway.ratelimit import RateLimiter
    from api_gateway.settings import ApiGatewaySettings
    from unde_common.db import AsyncPools
    from unde_common.metrics import AppMetrics
    from unde_common.shard_router import ShardRouter

__all__ = ["ApiError", "Res", "Resources", "resources"]


class ApiError(Exception):
    """An error answer: HTTP ``status``, a stable ``code``, a ``detail`` naming what is wrong."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


@dataclass
class Resources:
    """The process's clients. ``pools["production_db"]``: catalog and routing_table (through the
    tunnel); ``router``: the user's shard primary (``await router.pool_for_user(user_id)``);
    ``redis``: the gateway's hot Redis (DB 14, keys ``gw:*``); ``extras``: a route module's own
    clients (``extras["media"]``, ``extras["account"]``), set by its ``startup``."""

    settings: ApiGatewaySettings
    pools: AsyncPools
    router: ShardRouter
    redis: aioredis.Redis
    dialogue: DialogueClient
    rate_limiter: RateLimiter
    analytics: Analytics
    metrics: AppMetrics
    extras: dict[str, Any] = field(default_factory=dict)


def resources(request: Request) -> Resources:
    """FastAPI dependency: the app's :class:`Resources`."""
    res: Resources = request.app.state.resources
    return res


#: ``res: Res`` in a route's parameters: the app's :class:`Resources`
Res = Annotated[Resources, Depends(resources)]
