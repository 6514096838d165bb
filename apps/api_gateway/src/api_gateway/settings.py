"""Settings of api_gateway (local-app (10.2.0.2), behind nginx).

Read by ``ApiGatewaySettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/api_gateway/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``. The media/recognition/products fields live in
:class:`~api_gateway.media_settings.MediaSettings`, the replay/forget/profile fields in
:class:`~api_gateway.account_settings.AccountSettings`; the shard routing fields in
:class:`~unde_common.shard_router.ShardRoutingSettings`.
"""

from __future__ import annotations

import json
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator

from api_gateway.account_settings import AccountSettings
from api_gateway.media_settings import MediaSettings
from unde_common.settings import (
    DbPoolSettings,
    HttpClientSettings,
    HttpServiceSettings,
    PostgresDsn,
    RedisDsn,
)
from unde_common.shard_router import ShardRoutingSettings


class Rate(BaseModel):
    """One token bucket: ``rate`` tokens per second refill, at most ``burst`` kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)


#: the buckets every deployment has (group_vars/all/entry.yml ``unde_rate_limits`` renders the same);
#: replay is the spec's one pair per second per user (its cost is the number of pairs)
DEFAULT_RATE_LIMITS: dict[str, Rate] = {
    "auth": Rate(rate=0.2, burst=5),
    "chat": Rate(rate=0.5, burst=10),
    "session": Rate(rate=0.5, burst=10),
    "recognize": Rate(rate=0.2, burst=5),
    "upload": Rate(rate=0.5, burst=10),
    "replay": Rate(rate=1.0, burst=10),
    "products": Rate(rate=5.0, burst=30),
    "account": Rate(rate=1.0, burst=10),
}


def parse_signing_keys(raw: str) -> dict[str, Ed25519PrivateKey]:
    """``{"<kid>": "<Ed25519 private key PEM>", ...}`` → the keys; ValueError naming what is wrong."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("must be a JSON object {kid: Ed25519 private key PEM}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError("must be a non-empty JSON object {kid: Ed25519 private key PEM}")
    keys: dict[str, Ed25519PrivateKey] = {}
    for kid, pem in data.items():
        if not isinstance(kid, str) or not kid or len(kid) > 64:
            raise ValueError("key ids must be non-empty strings of at most 64 characters")
        if not isinstance(pem, str):
            raise ValueError(f"key {kid!r} is not a PEM string")
        try:
            key = load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError(f"key {kid!r} is not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"key {kid!r} is not an Ed25519 key")
        keys[kid] = key
    return keys


class ApiGatewaySettings(
    HttpServiceSettings,
    DbPoolSettings,
    HttpClientSettings,
    ShardRoutingSettings,
    MediaSettings,
    AccountSettings,
):
    """The only user entry point (behind nginx): REST API, chat through the LLM orchestrator,
    recognition requests, media, replay, analytics.
    """

    app_name: str = "api_gateway"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=4, ge=1, le=64)

    #: production DB (Helsinki, through the tunnel): catalog, routing_table
    production_db_url: PostgresDsn = SecretStr("postgresql://app_ro@localhost/unde_main")
    #: hot-path Redis (local-redis): rate limits, sessions, debounce, DB 14
    redis_url: RedisDsn = SecretStr("redis://localhost/14")
    #: dialogue_queue's broker and result backend (the orchestrator's Celery), local-redis DB 11;
    #: the answer's sentences are published there too (orch:stream:<assistant_message_id>)
    dialogue_broker_url: RedisDsn = SecretStr("redis://localhost/11")

    mood_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")
    context_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")

    # ------------------------------------------------------------------ user tokens
    #: the signing keys of user tokens: JSON ``{"<kid>": "<Ed25519 private key PEM>"}`` (vault).
    #: Tokens carry their key's id (``kid`` header); every key listed verifies, the current one signs.
    #: Rotation: add the new key, make it current, drop the old one after REFRESH_TOKEN_TTL_S.
    jwt_signing_keys: SecretStr
    #: the key that signs new tokens; empty: the only key of JWT_SIGNING_KEYS
    jwt_current_kid: str = ""
    jwt_issuer: str = "unde-api-gateway"
    jwt_audience: str = "unde-app"
    #: access tokens live 15 minutes, refresh tokens 30 days
    access_token_ttl_s: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=3600, le=400 * 86_400)
    #: clock skew tolerated between this host and the phone's idea of time (exp/iat/nbf)
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)
    #: a shard whose primary does not answer SELECT 1 within this is not given new users
    signup_shard_check_timeout_s: float = Field(default=1.0, gt=0, le=10)

    # ------------------------------------------------------------------ dialogue (generate_response)
    dialogue_queue: str = "dialogue_queue"
    dialogue_task: str = "llm_orchestrator.generate_response"
    #: the longest a chat request waits for its answer (the task's hard limit is 30 s); past it the
    #: client gets 503 + Retry-After and replays with the same message ids
    dialogue_deadline_s: float = Field(default=30.0, gt=0, le=120)
    #: tasks waiting in dialogue_queue beyond which a new chat is refused (503 + Retry-After)
    dialogue_max_queued: int = Field(default=200, ge=1)
    #: Retry-After (seconds) of a refused or timed-out chat
    dialogue_retry_after_s: int = Field(default=3, ge=1, le=600)
    #: an SSE stream sends a comment this often while no sentence arrives (keeps proxies from closing)
    sse_keepalive_s: float = Field(default=10.0, gt=0, le=60)

    # ------------------------------------------------------------------ rate limits
    #: per-user token buckets: JSON ``{"<bucket>": {"rate": <tokens/s>, "burst": <n>}}`` (group_vars
    #: entry.yml ``unde_rate_limits``); buckets left out keep their defaults
    rate_limits: dict[str, Rate] = Field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))

    # ------------------------------------------------------------------ analytics (PostHog)
    #: self-hosted PostHog (Helsinki, the role renders its address); the project API key empty:
    #: analytics off
    posthog_host: HttpUrl = HttpUrl("http://127.0.0.1")
    posthog_api_key: SecretStr = SecretStr("")
    #: events are sent in batches (POST <host>/batch/) by one background task per process
    posthog_batch_path: str = "/batch/"
    posthog_timeout_s: float = Field(default=3.0, gt=0, le=30)
    posthog_batch_size: int = Field(default=50, ge=1, le=1000)
    #: events waiting to be sent; past it new events are dropped (and counted), never waited for
    analytics_queue_size: int = Field(default=2000, ge=1)
    #: the sender waits this long to fill a batch; after a failed send it pauses this long
    analytics_flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    analytics_retry_pause_s: float = Field(default=5.0, gt=0, le=600)
    #: the HMAC key of the anonymised distinct_id sent to PostHog (vault): the user id never leaves
    analytics_id_key: SecretStr

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rates_merge(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if isinstance(value, dict):
            return {**DEFAULT_RATE_LIMITS, **value}
        return value

    @field_validator("jwt_signing_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_signing_keys(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _current_kid_known(self) -> Self:
        kids = list(parse_signing_keys(self.jwt_signing_keys.get_secret_value()))
        if self.jwt_current_kid and self.jwt_current_kid not in kids:
            raise ValueError(f"JWT_CURRENT_KID {self.jwt_current_kid!r} is not one of JWT_SIGNING_KEYS")
        if not self.jwt_current_kid and len(kids) > 1:
            raise ValueError("JWT_CURRENT_KID must name the signing key when JWT_SIGNING_KEYS holds several")
        return self

    def signing_kid(self) -> str:
        """The key id that signs new tokens."""
        return self.jwt_current_kid or next(iter(json.loads(self.jwt_signing_keys.get_secret_value())))
