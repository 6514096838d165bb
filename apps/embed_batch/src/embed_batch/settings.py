"""Settings of embed_batch (embed-batch (10.1.0.17)).

Read by ``EmbedBatchSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/embed_batch/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr

from unde_common.s3 import S3Settings
from unde_common.settings import (
    CeleryWorkerSettings,
    CommaList,
    DbPoolSettings,
    Duration,
    HttpServiceSettings,
    PostgresDsn,
    RedisDsn,
)


class EmbedBatchSettings(HttpServiceSettings, CeleryWorkerSettings, DbPoolSettings, S3Settings):
    """Batch catalog indexing into pgvector sku_image_embeddings: POST /embed_batch, GET /status and
    Celery workers.
    """

    app_name: str = "embed_batch"
    port: int = Field(default=8004, ge=1, le=65535)

    model_path: Path = Path("/opt/unde/embed_batch/models/fashionclip2-image.onnx")
    embedding_dim: int = Field(default=512, ge=1)
    model_version: str = "fashionclip-2.0-onnx"
    onnx_threads: int = Field(default=0, ge=0)
    onnx_providers: CommaList = Field(default_factory=lambda: ["CPUExecutionProvider"])
    #: production DB: INSERT into sku_image_embeddings
    production_db_url: PostgresDsn = SecretStr("postgresql://embed_batch@localhost/unde_main")
    #: Celery broker: batch Redis on `push`, catalog pipeline DB 7 (also the job state)
    redis_url: RedisDsn = SecretStr("redis://localhost/7")

    #: Object Storage key of photo i (0-based) of a SKU, as photo-downloader writes it
    originals_key: str = "originals/{brand}/{sku}/{n}.jpg"
    #: photos per SKU of the weekly sync (spec: 47K SKUs x 5 = 235K embeddings)
    images_per_sku: int = Field(default=5, ge=1, le=20)
    #: progressive ingestion: SKUs the pipeline offered with a final score below the exact band
    #: (CONFIDENCE_HIGH 0.85) ...
    progressive_score_max: float = Field(default=0.85, ge=0, le=1)
    #: ... within this window get all their photos embedded (up to progressive_images_max)
    progressive_lookback: Duration = timedelta(days=7)
    progressive_images_max: int = Field(default=10, ge=1, le=50)
    max_image_bytes: int = Field(default=30 * 1024 * 1024, ge=1024)

    batch_size: int = Field(default=500, ge=1)
    #: the initial load runs 8-13 hours; Redis must not redeliver a running batch
    celery_visibility_timeout_s: int = Field(default=16 * 3600, ge=60)
    #: a running job whose heartbeat is older than this is taken over (worker crashed)
    job_stale_after_s: int = Field(default=120, ge=10)
