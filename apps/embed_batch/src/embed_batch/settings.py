"""Settings of embed_batch (embed-batch (10.1.0.17)).

Read by ``EmbedBatchSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/embed_batch/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import (
    CeleryWorkerSettings,
    DbPoolSettings,
    HttpServiceSettings,
    PostgresDsn,
    RedisDsn,
)


class EmbedBatchSettings(HttpServiceSettings, CeleryWorkerSettings, DbPoolSettings):
    """Batch catalog indexing into pgvector sku_image_embeddings: POST /embed_batch, GET /status and
    Celery workers.
    """

    app_name: str = "embed_batch"
    port: int = Field(default=8004, ge=1, le=65535)

    model_path: Path = Path("/opt/unde/embed_batch/models/fashionclip2-image.onnx")
    embedding_dim: int = Field(default=512, ge=1)
    #: production DB: INSERT into sku_image_embeddings
    production_db_url: PostgresDsn = SecretStr("postgresql://embed_batch@localhost:6432/unde_main")
    #: Celery broker: batch Redis on `push`, catalog pipeline DB 7
    redis_url: RedisDsn = SecretStr("redis://localhost:6379/7")

    #: Object Storage, read originals/
    s3_endpoint: HttpUrl = HttpUrl("https://hel1.your-objectstorage.com")
    s3_access_key: SecretStr
    s3_secret_key: SecretStr
    s3_bucket: str = "unde-images"

    batch_size: int = Field(default=500, ge=1)
    #: the initial load runs 8-13 hours; Redis must not redeliver a running batch
    celery_visibility_timeout_s: int = Field(default=16 * 3600, ge=60)
