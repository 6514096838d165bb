"""Settings of collage (collage (10.1.0.16)).

Read by ``CollageSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/collage/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import CeleryWorkerSettings, DbPoolSettings, PostgresDsn, RedisDsn


class CollageSettings(CeleryWorkerSettings, DbPoolSettings):
    """Glues each product's originals horizontally into one collage (JPEG q=95, 4:4:4, no downscaling)
    for try-on.
    """

    app_name: str = "collage"

    #: staging DB (PgBouncer on staging-db): raw_products
    staging_db_url: PostgresDsn = SecretStr("postgresql://collage@localhost:6432/unde_staging")
    #: Celery broker: batch Redis on `push`, DB 8
    redis_url: RedisDsn = SecretStr("redis://localhost:6379/8")

    s3_endpoint: HttpUrl = HttpUrl("https://hel1.your-objectstorage.com")
    s3_access_key: SecretStr
    s3_secret_key: SecretStr
    s3_bucket: str = "unde-images"

    batch_size: int = Field(default=100, ge=1)
    #: spec 01 wins over 02's 2048 px / q=85: full resolution, JPEG quality 95, 4:4:4
    collage_quality: int = Field(default=95, ge=1, le=100)
    collage_subsampling: Literal[0, 1, 2] = 0
    #: 0 = never downscale
    collage_max_width: int = Field(default=0, ge=0)
    data_dir: Path = Path("/opt/unde/collage/data")
