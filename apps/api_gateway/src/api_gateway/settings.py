"""Settings of api_gateway (local-app (10.2.0.2), behind nginx).

Read by ``ApiGatewaySettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/api_gateway/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import (
    DbPoolSettings,
    HttpClientSettings,
    HttpServiceSettings,
    PostgresDsn,
    RedisDsn,
)


class ApiGatewaySettings(HttpServiceSettings, DbPoolSettings, HttpClientSettings):
    """The only user entry point (behind nginx): REST API, chat fan-out to mood/context agents and the
    LLM orchestrator, recognition requests.
    """

    app_name: str = "api_gateway"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=4, ge=1, le=64)

    #: production DB (Helsinki, through the tunnel): catalog, routing_table
    production_db_url: PostgresDsn = SecretStr("postgresql://app_ro@localhost/unde_main")
    #: local shard 0 (app_rw): chat history, user knowledge
    shard_0_db_url: PostgresDsn = SecretStr("postgresql://app_rw@localhost/unde_shard")
    #: hot-path Redis (local-redis): rate limits, sessions, debounce, DB 14
    redis_url: RedisDsn = SecretStr("redis://localhost/14")
    #: shard routing cache on local-redis, DB 12
    shard_routing_redis_url: RedisDsn = SecretStr("redis://localhost/12")
    #: producers: dialogue_queue on local-redis DB 11, recognition_queue on push DB 6
    dialogue_broker_url: RedisDsn = SecretStr("redis://localhost/11")
    recognition_broker_url: RedisDsn = SecretStr("redis://localhost/6")

    mood_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")
    context_agent_url: HttpUrl = HttpUrl("http://127.0.0.1")

    #: Object Storage, private user-media bucket
    s3_endpoint: HttpUrl = HttpUrl("https://hel1.your-objectstorage.com")
    s3_user_media_access_key: SecretStr
    s3_user_media_secret_key: SecretStr
    s3_user_media_bucket: str = "unde-user-media"
