"""Settings of photo_downloader (photo-downloader (10.1.0.10)).

Read by ``PhotoDownloaderSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/photo_downloader/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import (
    CeleryWorkerSettings,
    DbPoolSettings,
    HttpClientSettings,
    PostgresDsn,
    RedisDsn,
)


class PhotoDownloaderSettings(CeleryWorkerSettings, DbPoolSettings, HttpClientSettings):
    """Downloads pending brand photos (residential proxy) and uploads them to Object Storage
    originals/.
    """

    app_name: str = "photo_downloader"

    #: staging DB (PgBouncer on staging-db): raw_products
    staging_db_url: PostgresDsn = SecretStr("postgresql://downloader@localhost:6432/unde_staging")
    #: Celery broker: batch Redis on `push`, catalog pipeline DB 7
    redis_url: RedisDsn = SecretStr("redis://localhost:6379/7")

    #: Hetzner Object Storage (S3 API)
    s3_endpoint: HttpUrl = HttpUrl("https://hel1.your-objectstorage.com")
    s3_access_key: SecretStr
    s3_secret_key: SecretStr
    s3_bucket: str = "unde-images"
    #: residential proxy for brand image hosts (http://user:pass@host:port), none = direct
    download_proxy_url: SecretStr | None = None

    download_timeout: float = Field(default=30, gt=0)
    max_retries: int = Field(default=3, ge=0)
    batch_size: int = Field(default=200, ge=1)
    concurrent_downloads: int = Field(default=10, ge=1)
    max_photos_per_product: int = Field(default=5, ge=1)
    #: scratch space for downloads, emptied by cleanup_temp_files
    data_dir: Path = Path("/opt/unde/photo_downloader/data")
