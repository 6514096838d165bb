"""Settings of ximilar_gw (ximilar-gw (10.1.0.12)).

Read by ``XimilarGwSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/ximilar_gw/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import (
    DbPoolSettings,
    HttpClientSettings,
    HttpServiceSettings,
    ImageFetchSettings,
    PostgresDsn,
    RedisDsn,
)


class XimilarGwSettings(HttpServiceSettings, DbPoolSettings, HttpClientSettings, ImageFetchSettings):
    """Ximilar gateway: /detect, /tag, /search with v5.1 dual retrieval (pgvector kNN via the embedder
    + conditional Ximilar booster).
    """

    app_name: str = "ximilar_gw"
    port: int = Field(default=8001, ge=1, le=65535)
    workers: int = Field(default=4, ge=1, le=64)

    ximilar_api_token: SecretStr
    ximilar_collection_id: str
    ximilar_base_url: HttpUrl = HttpUrl("https://api.ximilar.com")
    #: the Ximilar visual-search service of the collection ximilar-sync fills (visualKNN lives
    #: under it; a collection belongs to one service): Fashion Search
    #: (https://docs.ximilar.com/visual-search/overview "Endpoints"); rendered by both roles from
    #: group_vars ``unde_ximilar_service_path``
    ximilar_service_path: str = Field(default="/similarity/fashion-new/v2", pattern=r"^/[\w./-]*[^/]$")
    #: embedder (10.1.0.15:8003) for pgvector kNN queries
    embedder_url: HttpUrl = HttpUrl("http://127.0.0.1")
    #: production DB, read-only kNN over sku_image_embeddings
    production_db_url: PostgresDsn = SecretStr("postgresql://ximilar_gw@localhost/unde_main")

    #: feature flags (spec 01 §19b)
    search_backend: Literal["ximilar", "pgvector", "conditional", "dual"] = "conditional"
    confidence_threshold: float = Field(default=0.80, ge=0, le=1)
    margin: float = Field(default=0.10, ge=0, le=1)

    #: the shared Ximilar rate limiter's bucket (batch Redis on `push`, the recognition DB 6,
    #: keys ``ratelimit:*``): every uvicorn worker takes its tokens from it
    redis_url: RedisDsn = SecretStr("redis://localhost/6")
    ximilar_rate_limit_per_s: float = Field(default=10.0, gt=0)
    ximilar_rate_limit_burst: int = Field(default=20, ge=1)
    #: longest wait for a token before answering 429
    ximilar_rate_limit_wait_s: float = Field(default=2.0, ge=0)
    #: Ximilar read timeout: the orchestrator's task has 30 s for everything
    ximilar_read_timeout_s: float = Field(default=8.0, gt=0)
    ximilar_max_attempts: int = Field(default=2, ge=1, le=5)
    embedder_timeout_s: float = Field(default=5.0, gt=0)

    #: kNN candidates per query (photos; one SKU may own several): nearest photos fetched before
    #: de-duplicating by SKU = top_k * knn_photos_per_sku
    knn_photos_per_sku: int = Field(default=3, ge=1, le=10)
    #: hnsw.ef_search for the kNN (pgvector default 40; must be >= the LIMIT for full results)
    hnsw_ef_search: int = Field(default=200, ge=10, le=1000)
    detect_min_confidence: float = Field(default=0.30, ge=0, le=1)
    image_fetch_timeout_s: float = Field(default=8.0, gt=0)
