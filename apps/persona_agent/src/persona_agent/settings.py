"""Settings of persona_agent (local-persona (10.2.0.21)).

Read by ``PersonaAgentSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/persona_agent/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from unde_common.settings import DbPoolSettings, HttpServiceSettings, RedisDsn
from unde_common.shard_router import ShardRoutingSettings


class PersonaAgentSettings(HttpServiceSettings, DbPoolSettings, ShardRoutingSettings):
    """Persona agent (rule engine, no LLM): /persona, /persona/feedback, /persona/flush, p95 < 15 ms."""

    app_name: str = "persona_agent"
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("persona_port", "port"))
    workers: int = Field(default=4, ge=1, le=64, validation_alias=AliasChoices("persona_workers", "workers"))

    #: hot-path Redis (local-redis), DB 13: idempotency store, signal buffer, locks
    redis_url: RedisDsn = SecretStr("redis://localhost/13")
    persona_contract_version: str = Field(default="0.7.0", pattern=r"^\d+\.\d+\.\d+$")
    #: in-process LRU of persona profiles
    profile_cache_size: int = Field(default=100, ge=1)
    #: seconds /persona waits for the shard before answering from the cache or the defaults
    persona_db_timeout_s: float = Field(default=0.5, gt=0)
    #: after a shard failure, /persona skips the shard for this long
    persona_db_retry_after_s: float = Field(default=2.0, ge=0)
    #: buffered signals of other exchanges older than this are flushed with the next flush
    persona_stale_after_s: float = Field(default=600.0, gt=0)
