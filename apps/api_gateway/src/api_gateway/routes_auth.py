"""Sign-up of a device and token refresh (the only routes without an access token).

``POST /api/v1/auth/device``: a new user (random UUID) on the least-loaded live shard, written to
production ``routing_table`` (the shard router's assignment lookup, so the user stays there after a
rebalance), answered with an access + refresh token pair. Live: the shard's primary answers
``SELECT 1`` within ``SIGNUP_SHARD_CHECK_TIMEOUT_S`` (remembered for a few seconds); least-loaded:
fewest rows in ``routing_table``, the lowest index on a tie. Limited per client address (bucket
``auth``): sign-up needs no token, so the address is the only key there is.

``POST /api/v1/auth/refresh`` ``{"refresh_token"}``: a new pair for the token's user, with the
shard read again from ``routing_table`` (the token's shard when the production DB cannot answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api_gateway.auth import decode_token, issue_tokens, unauthorized
from api_gateway.resources import ApiError, Res, Resources
from unde_common.db import DatabaseUnavailableError, acheck

__all__ = ["router"]

log = logging.getLogger("api_gateway.auth")

router = APIRouter(tags=["auth"])

_LIVE_TTL_S = 5.0
#: where the process remembers which shards answered (index → (until, alive))
_LIVE_KEY = "auth_live_shards"


class DeviceSignup(BaseModel):
    """What the app tells about itself at sign-up (all optional, nothing personal)."""

    model_config = ConfigDict(extra="forbid")

    platform: str | None = Field(default=None, pattern=r"^(ios|android|web)$")
    app_version: str | None = Field(default=None, max_length=32, pattern=r"^[0-9A-Za-z.+-]+$")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    refresh_expires_in: int
    user_id: uuid.UUID
    shard: int


async def _live(res: Resources, index: int) -> bool:
    now = time.monotonic()
    live_cache: dict[int, tuple[float, bool]] = res.extras.setdefault(_LIVE_KEY, {})
    cached = live_cache.get(index)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        await acheck(await res.router.pool(index), timeout_s=res.settings.signup_shard_check_timeout_s)
        alive = True
    except (DatabaseUnavailableError, LookupError):
        alive = False
    live_cache[index] = (now + _LIVE_TTL_S, alive)
    return alive


async def assign_shard(res: Resources, user_id: uuid.UUID) -> int:
    """Put ``user_id`` on the least-loaded live shard (routing_table row inserted); returns the shard."""
    indexes = list(range(res.settings.shard_count))
    alive = await asyncio.gather(*(_live(res, i) for i in indexes))
    live = [i for i, ok in zip(indexes, alive, strict=True) if ok]
    if not live:
        raise ApiError(
            503,
            "no_shard_available",
            "no user data shard answers; retry later",
            headers={"Retry-After": str(res.settings.dialogue_retry_after_s)},
        )
    async with res.pools["production_db"].connection() as conn:
        cur = await conn.execute(
            "SELECT shard_index, count(*) FROM routing_table"
            " WHERE shard_index = ANY(%s) GROUP BY shard_index",
            (live,),
        )
        counts = {int(i): int(n) for i, n in await cur.fetchall()}
        shard = min(live, key=lambda i: (counts.get(i, 0), i))
        await conn.execute(
            "INSERT INTO routing_table (user_id, shard_index) VALUES (%s, %s)", (user_id, shard)
        )
    return shard


@router.post("/auth/device", response_model=TokenPair, status_code=201)
async def device_signup(request: Request, res: Res, body: DeviceSignup | None = None) -> dict[str, Any]:
    """A new anonymous user for this device: its tokens (keep the refresh token: it is the account)."""
    client = request.client.host if request.client else "unknown"
    await res.rate_limiter.check(client, "auth")
    user_id = uuid.uuid4()
    shard = await assign_shard(res, user_id)
    log.info("user signed up", extra={"user_id": str(user_id), "shard": shard})
    props = {"step": "device_signup", "platform": body.platform if body else None}
    res.analytics.capture_user("onboarding_step", user_id, props)
    return issue_tokens(res.settings, user_id, shard)


@router.post("/auth/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, res: Res) -> dict[str, Any]:
    """A new token pair for the refresh token's user."""
    user = decode_token(res.settings, body.refresh_token, "refresh")
    await res.rate_limiter.check(user.user_id, "auth")
    shard = user.shard
    try:
        async with res.pools["production_db"].connection(timeout=1.0) as conn:
            cur = await conn.execute(
                "SELECT shard_index FROM routing_table WHERE user_id = %s", (user.user_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise unauthorized("the token's user no longer exists")
        shard = int(row[0])
    except ApiError:
        raise
    except Exception as exc:  # the production DB is down: the token's shard is still right
        log.warning("routing_table unreadable at refresh", extra={"error": type(exc).__name__})
    return issue_tokens(res.settings, user.user_id, shard)
