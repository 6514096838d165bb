"""Settings of llm_reranker (llm-reranker (10.1.0.13)).

Read by ``LlmRerankerSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/llm_reranker/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import HttpClientSettings, HttpServiceSettings


class LlmRerankerSettings(HttpServiceSettings, HttpClientSettings):
    """LLM reranker: /tag (style, occasion, brand style, season) and /rerank (visual + semantic)
    through Gemini.
    """

    app_name: str = "llm_reranker"
    port: int = Field(default=8002, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)

    gemini_api_key: SecretStr
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: HttpUrl = HttpUrl("https://generativelanguage.googleapis.com")
    #: combined score = visual_weight * visual + (1 - visual_weight) * semantic
    visual_weight: float = Field(default=0.7, ge=0, le=1)

    #: Gemini read timeout per call; /rerank runs its calls in parallel, so this bounds it too
    gemini_read_timeout_s: float = Field(default=8.0, gt=0)
    gemini_max_attempts: int = Field(default=2, ge=1, le=5)
    #: parallel Gemini calls per /rerank (spec: 10 candidates in 1-2 s)
    rerank_parallel: int = Field(default=10, ge=1, le=50)
    rerank_max_candidates: int = Field(default=10, ge=1, le=50)
    #: USD per million tokens (Gemini 2.5 Flash list price) for llm_reranker_cost_usd
    gemini_input_usd_per_mtok: float = Field(default=0.30, ge=0)
    gemini_output_usd_per_mtok: float = Field(default=2.50, ge=0)
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    image_fetch_timeout_s: float = Field(default=8.0, gt=0)
