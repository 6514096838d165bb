"""Settings of scraper (scraper (10.1.0.3)).

Read by ``ScraperSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/scraper/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import (
    CeleryWorkerSettings,
    CommaIntList,
    CommaList,
    DbPoolSettings,
    HttpClientSettings,
    PostgresDsn,
    RedisDsn,
)


class ScraperSettings(CeleryWorkerSettings, DbPoolSettings, HttpClientSettings):
    """Zara mobile API availability poll (KZ stores) into staging, hourly sync of verified products to
    production, staging cleanup.
    """

    app_name: str = "scraper"

    #: staging DB (PgBouncer on staging-db): raw_products, raw_availability, scraper_logs
    staging_db_url: PostgresDsn = SecretStr("postgresql://scraper@localhost/unde_staging")
    #: production DB (PgBouncer on production-db): products
    production_db_url: PostgresDsn = SecretStr("postgresql://undeuser@localhost/unde_main")
    #: Celery broker: batch Redis on `push`, catalog pipeline DB 7
    redis_url: RedisDsn = SecretStr("redis://localhost/7")

    #: Inditex mobile REST API used for per-store stock (the "Zara mobile API")
    zara_api_base_url: HttpUrl = HttpUrl("https://itxrest.inditex.com")
    #: per-colour stock in the given physical stores: {reference} is the colour's 11-digit
    #: reference, {campaign} that reference's campaign (``V2026`` spring/summer, ``I2026`` autumn/winter)
    zara_stock_path: str = (
        "/LOMOServiciosRESTCommerce-ws/common/1/stock/campaign/{campaign}/product/part-number/{reference}"
    )
    zara_user_agent: str = "ZaraApp/15.10.0"
    #: Kazakhstan Zara stores polled for availability
    kz_zara_stores: CommaIntList = Field(default_factory=lambda: [6643, 9204, 9073, 16546])
    #: brands whose availability comes from the mobile API (the stores above are Zara's)
    availability_brands: CommaList = Field(default_factory=lambda: ["zara"])
    #: parallel stock requests
    poll_concurrency: int = Field(default=8, ge=1, le=64)
    #: products written to raw_availability per transaction
    poll_chunk_size: int = Field(default=200, ge=1)
    #: a poll with a larger share of failed products reports availability_poll_success 0
    poll_max_error_ratio: float = Field(default=0.2, ge=0, le=1)
    #: availability younger than this makes a product eligible for production sync
    availability_fresh_hours: int = Field(default=2, ge=1)
    #: products claimed (row-locked) and upserted per transaction by sync_to_production
    sync_chunk_size: int = Field(default=500, ge=1)
    #: a product whose sync failed this many times is left in 'error'
    max_sync_attempts: int = Field(default=5, ge=1)
    #: staging rows older than this are deleted by cleanup_old_data
    cleanup_retention_days: int = Field(default=30, ge=1)
    #: rows deleted per statement by cleanup_old_data
    cleanup_chunk_size: int = Field(default=5000, ge=1)
