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
    staging_db_url: PostgresDsn = SecretStr("postgresql://apify@localhost/unde_staging")
    #: Celery broker: batch Redis on `push`, catalog pipeline DB 7
    redis_url: RedisDsn = SecretStr("redis://localhost/7")
    #: an actor run (one brand) may take hours; Redis must not redeliver it meanwhile
    celery_visibility_timeout_s: int = Field(default=6 * 3600, ge=60)

    #: Apify actor per brand (``username/actor`` or an actor id), spec 02 §2 ``datasaurus/{brand}``
    apify_actor_zara: str = "datasaurus/zara"
    apify_actor_bershka: str = "datasaurus/bershka"
    apify_actor_pullandbear: str = "datasaurus/pullandbear"
    apify_actor_stradivarius: str = "datasaurus/stradivarius"
    apify_actor_massimodutti: str = "datasaurus/massimodutti"
    apify_actor_oysho: str = "datasaurus/oysho"
    #: the actors' ``start_urls`` template ({brand} is replaced) and item cap: the actor input's
    #: ``max_results`` and the run's ``maxItems`` (what a pay-per-result actor may charge for)
    apify_start_url: str = "https://www.{brand}.com/kz/en/"
    apify_max_items: int = Field(default=20000, ge=1)
    #: memory (MB) the actor run gets on Apify; 0 = the actor's default
    apify_run_memory_mb: int = Field(default=0, ge=0)
    #: how long a run may take: the run's ``timeout`` on Apify, and how long the collector waits
    #: before it aborts the run and records the failure
    apify_run_timeout_s: int = Field(default=4 * 3600, ge=10)
    #: a run start whose answer was lost is looked for this long among the actor's runs
    apify_start_lookup_s: float = Field(default=30.0, ge=0)
    #: the lookup lists runs started since this many seconds before the start request (clock skew
    #: between this host and Apify)
    apify_start_clock_skew_s: int = Field(default=120, ge=0)
    #: seconds one "wait for finish" poll blocks on Apify's side (API maximum 60)
    apify_wait_poll_s: int = Field(default=60, ge=0, le=60)
    #: dataset items per page (one staging transaction per page)
    apify_page_size: int = Field(default=1000, ge=1, le=250000)
    #: a killed collector's run (scraper_logs status 'running') younger than this is resumed
    apify_resume_window_hours: int = Field(default=20, ge=1)
