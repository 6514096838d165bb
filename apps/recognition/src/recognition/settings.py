"""Settings of recognition (recognition (10.1.0.14)).

Read by ``RecognitionSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/recognition/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import (
    CeleryWorkerSettings,
    DbPoolSettings,
    Duration,
    HttpClientSettings,
    PostgresDsn,
    RedisDsn,
)


class RecognitionSettings(CeleryWorkerSettings, DbPoolSettings, HttpClientSettings):
    """Recognition orchestrator: the recognize_photo pipeline (detect, tag, dual retrieval,
    availability filter, rerank) on recognition_queue.
    """

    app_name: str = "recognition"

    ximilar_gw_url: HttpUrl = HttpUrl("http://127.0.0.1")
    llm_reranker_url: HttpUrl = HttpUrl("http://127.0.0.1")
    #: Celery broker + results: batch Redis on `push`, DB 6 (the API gateway reads results there)
    celery_broker_url: RedisDsn = SecretStr("redis://localhost/6")
    celery_result_backend: RedisDsn = SecretStr("redis://localhost/6")
    #: production DB: SKU metadata, recognition_requests log
    database_url: PostgresDsn = SecretStr("postgresql://undeuser@localhost/unde_main")
    #: staging DB: raw_availability for the availability filter (v5.1)
    staging_db_url: PostgresDsn = SecretStr("postgresql://recognition@localhost/unde_staging")

    confidence_high: float = Field(default=0.85, ge=0, le=1)
    confidence_medium: float = Field(default=0.50, ge=0, le=1)
    #: feature flags (spec 01 §19b)
    tagging_mode: Literal["always", "on_demand", "off"] = "on_demand"
    availability_window: Duration = timedelta(hours=24)
    min_candidates: int = Field(default=3, ge=0)

    #: candidates asked from ximilar-gw per item, and on the re-query (booster forced)
    retrieve_top_k: int = Field(default=20, ge=1, le=100)
    requery_top_k: int = Field(default=50, ge=1, le=100)
    #: candidates sent to the visual rerank (spec: TOP-10)
    rerank_top_k: int = Field(default=10, ge=1, le=50)
    similar_max: int = Field(default=5, ge=1, le=20)
    style_max: int = Field(default=5, ge=1, le=20)
    #: read timeouts of the internal services (each call is also cut to the task's time left)
    ximilar_gw_timeout_s: float = Field(default=10.0, gt=0)
    llm_reranker_timeout_s: float = Field(default=12.0, gt=0)
    #: progressive loading: the detection is published on ``recognition:progress:<request_id>``
    #: and kept at ``recognition:detection:<request_id>`` this long
    progress_ttl_s: int = Field(default=600, ge=10)

    celery_concurrency: int = Field(default=2, ge=1, le=64)
    task_time_limit_s: int = Field(default=30, ge=1)
    task_soft_time_limit_s: int = Field(default=25, ge=1)
