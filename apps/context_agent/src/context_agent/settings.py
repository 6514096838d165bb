"""Settings of context_agent (local-context (10.2.0.19)).

Read by ``ContextAgentSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/context_agent/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, HttpUrl, SecretStr

from unde_common.settings import (
    DbPoolSettings,
    HttpClientSettings,
    HttpServiceSettings,
    PostgresDsn,
    RedisDsn,
)


class ContextAgentSettings(HttpServiceSettings, DbPoolSettings, HttpClientSettings):
    """Context agent: POST /context → context_frame (geo, weather, time, events, culture), p95 < 100
    ms.
    """

    app_name: str = "context_agent"
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("context_port", "port"))
    workers: int = Field(default=4, ge=1, le=64, validation_alias=AliasChoices("context_workers", "workers"))

    weather_api_key: SecretStr
    weather_api_url: HttpUrl = HttpUrl("https://api.weatherapi.com/v1")
    #: production DB (read-only): events, stores
    production_db_url: PostgresDsn = SecretStr("postgresql://readonly@localhost/unde_main")
    #: hot-path Redis (local-redis), DB 15: weather/events/culture caches
    redis_url: RedisDsn = SecretStr("redis://localhost/15")

    weather_cache_ttl: int = Field(default=1800, ge=0)
    #: outside a mall, requests within one cell of this many degrees share a WeatherAPI call (each
    #: call is paid); inside a mall the mall's point is asked, once per mall
    weather_grid_deg: float = Field(default=0.1, ge=0.01, le=1.0)
    events_cache_ttl: int = Field(default=3600, ge=0)
    cultural_cache_ttl: int = Field(default=86400, ge=0)

    #: on a cache miss, how long /context waits for WeatherAPI before answering without weather
    weather_wait_ms: int = Field(default=80, ge=1, le=10_000)
    #: on a cache miss, how long /context waits for the events query
    events_wait_ms: int = Field(default=60, ge=1, le=10_000)
    #: WeatherAPI request timeout (the fetch goes on in the background after weather_wait_ms)
    weather_timeout_s: float = Field(default=3.0, gt=0)
    #: how long an expired weather/events copy may still be served, marked "stale"
    stale_max_age_s: int = Field(default=6 * 3600, ge=0)
