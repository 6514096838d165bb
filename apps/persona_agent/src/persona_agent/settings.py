"""Settings of persona_agent (local-persona (10.2.0.21)).

Read by ``PersonaAgentSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/persona_agent/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator

from unde_common.settings import CommaList, DbPoolSettings, HttpServiceSettings, PostgresDsn, RedisDsn
from unde_common.shard_router import parse_members


class PersonaAgentSettings(HttpServiceSettings, DbPoolSettings):
    """Persona agent (rule engine, no LLM): /persona, /persona/feedback, /persona/flush, p95 < 15 ms."""

    app_name: str = "persona_agent"
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("persona_port", "port"))
    workers: int = Field(default=4, ge=1, le=64, validation_alias=AliasChoices("persona_workers", "workers"))

    #: shard routing cache on local-redis, DB 12: hash ``shard:<n>`` names each shard's primary
    #: (written by the Patroni routing callback); see apps/persona_agent/README.md "Shard routing"
    shard_routing_redis_url: RedisDsn = SecretStr("redis://localhost/12")
    #: shard 0 (local-shard-0): relationship_stage, persona_temp_blocks, signal_daily_deltas,
    #: persona_profiles. Used as is while ``shard:0`` is missing from the routing cache; otherwise
    #: its user, password and database are used on the host/port the routing entry names.
    shard_0_db_url: PostgresDsn = SecretStr("postgresql://app_rw@localhost/unde_shard")
    #: number of user data shards (user → shard: hash(user_id) % shard_count, spec 02 §14);
    #: shards ≥ 1 are reached through their routing entry with shard 0's credentials
    shard_count: int = Field(default=1, ge=1, le=1024)
    #: key of a shard's routing entry (the Patroni callback writes ``shard:<n>``; the lab's agents
    #: scenario uses its own keys so that the lab Patroni's entry does not move it)
    shard_routing_key: str = Field(default="shard:{index}", pattern=r"\{index\}")
    #: the only addresses a routing entry may name, per shard: ``<index>@<host>:<port>`` of each
    #: member's PostgreSQL and PgBouncer (the role renders them from the inventory); an entry
    #: naming any other address is refused (the configured DSN's own address is always allowed)
    shard_members: CommaList = Field(default_factory=list)
    #: the routing entry of a shard is re-read at most this often (and at once after a shard error)
    shard_routing_refresh_s: float = Field(default=1.0, gt=0, le=60)
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

    @field_validator("shard_members")
    @classmethod
    def _members_parse(cls, value: list[str]) -> list[str]:
        parse_members(value)  # ValueError names the malformed item
        return value
