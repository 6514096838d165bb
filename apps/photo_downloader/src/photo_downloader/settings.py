"""Settings of photo_downloader (photo-downloader (10.1.0.10)).

Read by ``PhotoDownloaderSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/photo_downloader/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr

from unde_common.s3 import S3Settings
from unde_common.settings import (
    CeleryWorkerSettings,
    CommaList,
    DbPoolSettings,
    HttpClientSettings,
    ImageFetchSettings,
    PostgresDsn,
    RedisDsn,
    _check_hosts,
    _check_networks,
)


class PhotoDownloaderSettings(CeleryWorkerSettings, DbPoolSettings, HttpClientSettings, S3Settings):
    """Downloads pending brand photos (residential proxy) and uploads them to Object Storage
    originals/.
    """

    app_name: str = "photo_downloader"

    #: staging DB (PgBouncer on staging-db): raw_products
    staging_db_url: PostgresDsn = SecretStr("postgresql://downloader@localhost/unde_staging")
    #: Celery broker: batch Redis on `push`, catalog pipeline DB 7
    redis_url: RedisDsn = SecretStr("redis://localhost/7")

    #: public base of the stored photos written to image_urls; empty = ``S3_ENDPOINT/S3_BUCKET``
    s3_public_base_url: str = ""
    #: residential proxy for brand image hosts (http://user:pass@host:port), none = direct
    download_proxy_url: SecretStr | None = None
    download_user_agent: str = "Mozilla/5.0 (compatible; UNDE-photo-downloader/1.0)"

    #: seconds per photo request (connect + read)
    download_timeout: float = Field(default=30, gt=0)
    #: retries per photo after the first attempt (timeouts, 429, 5xx, truncated bodies)
    max_retries: int = Field(default=3, ge=0)
    download_backoff_base_s: float = Field(default=1.0, ge=0)
    download_backoff_max_s: float = Field(default=20.0, ge=0)
    #: a 429/503 asking to wait longer than this fails the photo at once
    download_max_retry_after_s: float = Field(default=60.0, ge=0)
    #: products per run (download_pending / download_retry)
    batch_size: int = Field(default=200, ge=1)
    #: products claimed (row-locked) and finished per transaction; a killed worker loses at most these
    claim_chunk_size: int = Field(default=20, ge=1)
    concurrent_downloads: int = Field(default=10, ge=1)
    max_photos_per_product: int = Field(default=5, ge=1)
    #: download_retry gives up on a product after this many failed runs
    max_download_attempts: int = Field(default=5, ge=1)
    #: a photo must decode and be at least / at most this many pixels on each side
    photo_min_side_px: int = Field(default=100, ge=1)
    photo_max_side_px: int = Field(default=12000, ge=1)
    photo_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    #: pixels (width x height, read from the header before decoding) a photo may have: the image
    #: fetcher's limit, so a small decompression bomb is refused before its pixels are allocated
    photo_max_pixels: int = Field(default=ImageFetchSettings.model_fields["max_image_pixels"].default, ge=1)
    #: hosts photo URLs may name (``*.example.com`` = its subdomains); empty = any host whose
    #: addresses are public: the brands' CDNs are many and follow the catalog, the address check
    #: below is what keeps the downloader out of the private network
    download_hosts: Annotated[CommaList, AfterValidator(_check_hosts)] = Field(default_factory=list)
    #: non-public networks (CIDRs) a photo host may resolve into (tests, the lab); empty in
    #: production: loopback, private, link-local (cloud metadata), CGNAT ... addresses are refused
    #: after DNS resolution, at every redirect hop
    download_allow_networks: Annotated[CommaList, AfterValidator(_check_networks)] = Field(
        default_factory=list
    )
    #: redirects followed per photo, each target checked like the first URL
    download_max_redirects: int = Field(default=5, ge=0, le=10)
    #: JPEG settings when a brand serves another format (JPEGs are stored byte for byte)
    jpeg_quality: int = Field(default=95, ge=1, le=100)
    #: scratch space, emptied by cleanup_temp_files (photos are handled in memory)
    data_dir: Path = Path("/opt/unde/photo_downloader/data")
