"""Settings of collage (collage (10.1.0.16)).

Read by ``CollageSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/collage/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from unde_common.s3 import S3Settings
from unde_common.settings import CeleryWorkerSettings, DbPoolSettings, PostgresDsn, RedisDsn


class CollageSettings(CeleryWorkerSettings, DbPoolSettings, S3Settings):
    """Glues each product's originals horizontally into one collage (JPEG q=95, 4:4:4, no downscaling)
    for try-on.
    """

    app_name: str = "collage"

    #: staging DB (PgBouncer on staging-db): raw_products
    staging_db_url: PostgresDsn = SecretStr("postgresql://collage@localhost/unde_staging")
    #: Celery broker: batch Redis on `push`, DB 8
    redis_url: RedisDsn = SecretStr("redis://localhost/8")
    #: public base of collage_url; empty = ``S3_ENDPOINT/S3_BUCKET``
    s3_public_base_url: str = ""

    #: products per run (process_collages / retry_failed)
    batch_size: int = Field(default=100, ge=1)
    #: products claimed (row-locked) and finished per transaction
    claim_chunk_size: int = Field(default=8, ge=1)
    #: collages built in parallel (threads; Pillow releases the GIL while decoding/encoding)
    collage_concurrency: int = Field(default=2, ge=1, le=32)
    #: retry_failed gives up on a product after this many failed runs
    max_collage_attempts: int = Field(default=5, ge=1)
    #: spec 01 wins over 02's 2048 px / q=85: full resolution, JPEG quality 95, 4:4:4
    collage_quality: int = Field(default=95, ge=1, le=100)
    collage_subsampling: Literal[0, 1, 2] = 0
    #: 0 = never downscale
    collage_max_width: int = Field(default=0, ge=0)
    data_dir: Path = Path("/opt/unde/collage/data")
