"""The user's access token on the WebSocket: the API gateway's Ed25519 JWT, verified here.

The WebSocket comes from the app through nginx on local-app (no service token: the caller is a
user). Without a check anyone who can reach the entry could spend the ElevenLabs quota, so the
upgrade request must carry the gateway-issued access token (``Authorization: Bearer <token>``,
passed through by nginx). It is verified with the gateway's public keys (``JWT_PUBLIC_KEYS``,
``{kid: PEM}``; the header's ``kid`` picks one, only ``EdDSA``), its issuer, audience, expiry
and ``typ == "access"``, as the gateway itself does (api_gateway.auth). No key configured →
every stream is refused (fail closed), said once at start-up.
"""

from __future__ import annotations

import logging
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from voice.settings import VoiceSettings

__all__ = ["ALGORITHM", "UserTokenError", "UserTokenVerifier", "load_public_keys"]

log = logging.getLogger(__name__)
ALGORITHM = "EdDSA"


class UserTokenError(Exception):
    """The upgrade request has no valid access token; the message says why (never the token)."""


def load_public_keys(keys: dict[str, str]) -> dict[str, Ed25519PublicKey]:
    """``{kid: PEM}`` → Ed25519 public keys; ValueError naming a key that is not one."""
    loaded: dict[str, Ed25519PublicKey] = {}
    for kid, pem in keys.items():
        key = load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"JWT_PUBLIC_KEYS[{kid!r}] is not an Ed25519 public key")
        loaded[kid] = key
    return loaded


class UserTokenVerifier:
    """Verifies the gateway's access tokens (module doc)."""

    def __init__(self, settings: VoiceSettings) -> None:
        self.settings = settings
        self.keys = load_public_keys(settings.jwt_public_keys)
        if settings.ws_require_user_token and not self.keys:
            log.warning("JWT_PUBLIC_KEYS is empty: every WebSocket stream will be refused")

    def verify(self, authorization: str | None) -> uuid.UUID | None:
        """The user id of the request's access token (None when tokens are not required)."""
        if not self.settings.ws_require_user_token:
            return None
        if not authorization:
            raise UserTokenError("an access token is required (Authorization: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UserTokenError("the Authorization header must be 'Bearer <token>'")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UserTokenError("the token is not a JWT") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or kid not in self.keys:
            raise UserTokenError("the token is not signed by a known key")
        try:
            claims = jwt.decode(
                token,
                self.keys[kid],
                algorithms=[ALGORITHM],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=self.settings.jwt_leeway_s,
                options={"require": ["exp", "iat", "sub", "typ", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise UserTokenError("the token has expired") from None
        except jwt.PyJWTError:
            raise UserTokenError("the token is invalid") from None
        if claims.get("typ") != "access":
            raise UserTokenError("an access token is required")
        try:
            return uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise UserTokenError("the token's subject is invalid") from None
