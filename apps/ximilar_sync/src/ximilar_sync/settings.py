"""Settings of ximilar_sync (ximilar-sync (10.1.0.11)).

Read by ``XimilarSyncSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/ximilar_sync/.env``); names are case-insensitive, secrets are
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


class XimilarSyncSettings(CeleryWorkerSettings, DbPoolSettings, HttpClientSettings):
    """Pushes new catalog SKUs (with their images and metadata) into the Ximilar Collection; retries
    failures.
    """

    app_name: str = "ximilar_sync"

    #: staging DB (PgBouncer on staging-db): raw_products.ximilar_status
    staging_db_url: PostgresDsn = SecretStr("postgresql://ximilar@localhost/unde_staging")
    #: Celery broker: batch Redis on `push`, catalog pipeline DB 7
    redis_url: RedisDsn = SecretStr("redis://localhost/7")

    ximilar_api_token: SecretStr
    ximilar_collection_id: str
    ximilar_base_url: HttpUrl = HttpUrl("https://api.ximilar.com")
    #: the Ximilar visual-search service the collection belongs to (its insert, delete and
    #: allRecords live under it); ximilar-gw searches the same service: a collection belongs to
    #: one service. Fashion Search (https://docs.ximilar.com/visual-search/overview "Endpoints",
    #: https://docs.ximilar.com/visual-search/fashion); rendered by both roles from
    #: group_vars ``unde_ximilar_service_path``
    ximilar_service_path: str = Field(default="/similarity/fashion-new/v2", pattern=r"^/[\w./-]*[^/]$")
    #: records per insert request: Fashion Search takes at most 10
    #: (https://docs.ximilar.com/services/fashion_search "Things to note")
    ximilar_batch_records: int = Field(default=10, ge=1, le=10)
    #: collection records listed per allRecords page when the weekly run looks for stale records
    ximilar_page_size: int = Field(default=1000, ge=1, le=10000)
    #: products per run (ximilar_sync / ximilar_retry)
    batch_size: int = Field(default=1000, ge=1)
    #: products claimed (row-locked) and finished per transaction
    claim_chunk_size: int = Field(default=25, ge=1)
    #: products sent to Ximilar in parallel (each product's records in insert requests of
    #: ``ximilar_batch_records``)
    ximilar_concurrency: int = Field(default=4, ge=1, le=64)
    #: ximilar_retry gives up on a product after this many failed runs
    max_ximilar_attempts: int = Field(default=5, ge=1)
    #: stores where the product had stock within this window go into the "store" metadata
    store_window_hours: int = Field(default=24, ge=1)
