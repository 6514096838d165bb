"""User tokens: Ed25519-signed JWTs (EdDSA) with the signing key's id in the header.

- ``access`` tokens (``ACCESS_TOKEN_TTL_S``, 15 min) authorise every route but sign-up and refresh;
- ``refresh`` tokens (``REFRESH_TOKEN_TTL_S``, 30 days) only buy a new pair at ``/auth/refresh``.

Claims: ``sub`` (the user's UUID), ``shard`` (the user's shard when the token was made), ``typ``
(``access`` | ``refresh``: a refresh token is never accepted as access, nor the reverse), ``iss``,
``aud``, ``iat``, ``exp``, ``jti``. The header's ``kid`` picks the verifying key among
``JWT_SIGNING_KEYS``; only ``EdDSA`` is accepted (no ``none``, no HMAC with a public key). A token
signed by a key no longer listed, expired, forged, or of the wrong type → 401 with
``WWW-Authenticate: Bearer``. The user id of a request comes from its token only.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Final, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Depends, Request

from api_gateway.resources import ApiError
from api_gateway.settings import ApiGatewaySettings, parse_signing_keys

__all__ = ["ALGORITHM", "AuthUser", "CurrentUser", "KeyRing", "current_user", "decode_token", "issue_tokens"]

ALGORITHM: Final = "EdDSA"
TokenType = Literal["access", "refresh"]


@dataclass(frozen=True)
class AuthUser:
    """The caller of a request, from its access token."""

    user_id: uuid.UUID
    shard: int


@dataclass(frozen=True)
class KeyRing:
    """The signing keys of :attr:`ApiGatewaySettings.jwt_signing_keys`: the current one signs,
    every one verifies."""

    current: str
    private: dict[str, Ed25519PrivateKey]
    public: dict[str, Ed25519PublicKey]


@lru_cache(maxsize=8)
def _ring(raw: str, current: str) -> KeyRing:
    keys = parse_signing_keys(raw)
    return KeyRing(current or next(iter(keys)), keys, {kid: k.public_key() for kid, k in keys.items()})


def key_ring(settings: ApiGatewaySettings) -> KeyRing:
    return _ring(settings.jwt_signing_keys.get_secret_value(), settings.jwt_current_kid)


def _encode(settings: ApiGatewaySettings, user_id: uuid.UUID, shard: int, typ: TokenType, ttl_s: int) -> str:
    ring = key_ring(settings)
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "shard": shard,
        "typ": typ,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, ring.private[ring.current], algorithm=ALGORITHM, headers={"kid": ring.current})


def issue_tokens(settings: ApiGatewaySettings, user_id: uuid.UUID, shard: int) -> dict[str, Any]:
    """A new access + refresh token pair for the user (the answer of sign-up and refresh)."""
    return {
        "access_token": _encode(settings, user_id, shard, "access", settings.access_token_ttl_s),
        "refresh_token": _encode(settings, user_id, shard, "refresh", settings.refresh_token_ttl_s),
        "token_type": "Bearer",
        "expires_in": settings.access_token_ttl_s,
        "refresh_expires_in": settings.refresh_token_ttl_s,
        "user_id": str(user_id),
        "shard": shard,
    }


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def decode_token(settings: ApiGatewaySettings, token: str, typ: TokenType) -> AuthUser:
    """The user of a valid token of type ``typ``; :class:`ApiError` 401 otherwise (the reason named
    without echoing the token)."""
    ring = key_ring(settings)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise unauthorized("the token is not a JWT") from None
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str) or kid not in ring.public:
        raise unauthorized("the token is not signed by a known key")
    try:
        claims = jwt.decode(
            token,
            ring.public[kid],
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_s,
            options={"require": ["exp", "iat", "sub", "typ", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("the token has expired") from None
    except jwt.PyJWTError:
        raise unauthorized("the token is invalid") from None
    if claims.get("typ") != typ:
        raise unauthorized(
            f"the token is not an {typ} token" if typ == "access" else "a refresh token is required"
        )
    try:
        user_id = uuid.UUID(str(claims["sub"]))
        shard = int(claims.get("shard", 0))
    except (ValueError, TypeError):
        raise unauthorized("the token's subject is invalid") from None
    return AuthUser(user_id=user_id, shard=shard)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized("an access token is required (Authorization: Bearer <token>)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


async def current_user(request: Request) -> AuthUser:
    """FastAPI dependency: the caller of the request from its access token (401 otherwise)."""
    settings: ApiGatewaySettings = request.app.state.settings
    user = decode_token(settings, bearer_token(request), "access")
    request.state.user = user
    return user


#: ``user: CurrentUser`` in a route's parameters: the authenticated caller
CurrentUser = Annotated[AuthUser, Depends(current_user)]
