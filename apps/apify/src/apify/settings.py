"""Settings of apify (apify (10.1.0.9)).

Read by ``ApifySettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/apify/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import (
    CeleryWorkerSettings,
    DbPoolSettings,
    HttpClientSettings,
    PostgresDsn,
    RedisDsn,
)


class ApifySettings(CeleryWorkerSettings, DbPoolSettings, HttpClientSettings):
    """Weekly product metadata collection through Apify actors, one brand per hour on Sunday, into
    staging raw_products.
    """

    app_name: str = "apify"

    apify_token: SecretStr
    apify_base_url: HttpUrl = HttpUrl("https://api.apify.com/v2")
    #: staging DB (PgBouncer on staging-db): raw_products, scraper_logs
    staging_db_url: PostgresDsn = SecretStr("postgresql://apify@localhost:6432/unde_staging")
    #: Celery broker: batch Redis on `push`, catalog pipeline DB 7
    redis_url: RedisDsn = SecretStr("redis://localhost:6379/7")
    #: an actor run (one brand) may take hours; Redis must not redeliver it meanwhile
    celery_visibility_timeout_s: int = Field(default=6 * 3600, ge=60)
