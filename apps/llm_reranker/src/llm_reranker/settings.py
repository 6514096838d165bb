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
