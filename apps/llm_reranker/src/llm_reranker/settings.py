"""Settings of llm_reranker (llm-reranker (10.1.0.13)).

Read by ``LlmRerankerSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/llm_reranker/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import HttpClientSettings, HttpServiceSettings, ImageFetchSettings


class LlmRerankerSettings(HttpServiceSettings, HttpClientSettings, ImageFetchSettings):
    """LLM reranker: /tag (style, occasion, brand style, season) and /rerank (visual + semantic)
    through Gemini.
    """

    app_name: str = "llm_reranker"
    port: int = Field(default=8002, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)

    gemini_api_key: SecretStr
    #: Gemini 3.5 Flash-Lite (GA; "a suitable replacement for Gemini 2.5 Flash", which is shut down:
    #: https://ai.google.dev/gemini-api/docs/models, .../docs/deprecations); the role renders this
    #: default (roles/llm_reranker, checked equal by tests/test_llm_reranker_settings.py)
    gemini_model: str = "gemini-3.5-flash-lite"
    #: generationConfig.thinkingConfig.thinkingLevel of every call: the calls are latency-bound, so
    #: "minimal" (no thinking for most prompts; https://ai.google.dev/gemini-api/docs/thinking)
    gemini_thinking_level: Literal["minimal", "low", "medium", "high"] = "minimal"
    gemini_base_url: HttpUrl = HttpUrl("https://generativelanguage.googleapis.com")
    #: combined score = visual_weight * visual + (1 - visual_weight) * semantic
    visual_weight: float = Field(default=0.7, ge=0, le=1)

    #: Gemini read timeout per call; /rerank runs its calls in parallel, so this bounds it too
    gemini_read_timeout_s: float = Field(default=8.0, gt=0)
    gemini_max_attempts: int = Field(default=2, ge=1, le=5)
    #: one Gemini call across its attempts and the waits a 429/503 asks for
    gemini_deadline_s: float = Field(default=12.0, gt=0)
    #: parallel Gemini calls per /rerank (spec: 10 candidates in 1-2 s)
    rerank_parallel: int = Field(default=10, ge=1, le=50)
    rerank_max_candidates: int = Field(default=10, ge=1, le=50)
    #: USD per million tokens for llm_reranker_cost_usd: Gemini 3.5 Flash-Lite list price (paid tier,
    #: https://ai.google.dev/gemini-api/docs/pricing); the output price covers thinking tokens too
    gemini_input_usd_per_mtok: float = Field(default=0.30, ge=0)
    gemini_output_usd_per_mtok: float = Field(default=2.50, ge=0)
    image_fetch_timeout_s: float = Field(default=8.0, gt=0)
