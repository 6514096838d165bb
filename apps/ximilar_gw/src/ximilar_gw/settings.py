"""Settings of ximilar_gw (ximilar-gw (10.1.0.12)).

Read by ``XimilarGwSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/ximilar_gw/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import DbPoolSettings, HttpClientSettings, HttpServiceSettings, PostgresDsn


class XimilarGwSettings(HttpServiceSettings, DbPoolSettings, HttpClientSettings):
    """Ximilar gateway: /detect, /tag, /search with v5.1 dual retrieval (pgvector kNN via the embedder
    + conditional Ximilar booster).
    """

    app_name: str = "ximilar_gw"
    port: int = Field(default=8001, ge=1, le=65535)
    workers: int = Field(default=4, ge=1, le=64)

    ximilar_api_token: SecretStr
    ximilar_collection_id: str
    ximilar_base_url: HttpUrl = HttpUrl("https://api.ximilar.com")
    #: embedder (10.1.0.15:8003) for pgvector kNN queries
    embedder_url: HttpUrl = HttpUrl("http://127.0.0.1:8003")
    #: production DB, read-only kNN over sku_image_embeddings
    production_db_url: PostgresDsn = SecretStr("postgresql://ximilar_gw@localhost:6432/unde_main")

    #: feature flags (spec 01 §19b)
    search_backend: Literal["ximilar", "pgvector", "conditional", "dual"] = "conditional"
    confidence_threshold: float = Field(default=0.80, ge=0, le=1)
    margin: float = Field(default=0.10, ge=0, le=1)
