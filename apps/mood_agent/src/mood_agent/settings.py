"""Settings of mood_agent (local-mood (10.2.0.11)).

Read by ``MoodAgentSettings.load()`` from the process environment and the app's ``.env``
(``$UNDE_ENV_FILE``, else ``/opt/unde/mood_agent/.env``); names are case-insensitive, secrets are
``SecretStr``. See ``unde_common.settings``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, HttpUrl, SecretStr

from unde_common.settings import HttpClientSettings, HttpServiceSettings, RedisDsn


class MoodAgentSettings(HttpServiceSettings, HttpClientSettings):
    """Mood agent: POST /analyze → mood_frame (light LLM classification with fallback, smoothing), p95
    < 200 ms.
    """

    app_name: str = "mood_agent"
    port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("mood_port", "port"))
    workers: int = Field(default=4, ge=1, le=64, validation_alias=AliasChoices("mood_workers", "workers"))

    mood_llm_provider: Literal["deepseek", "gemini"] = "deepseek"
    #: DeepSeek V4 Flash (deepseek-chat was an alias of its non-thinking mode, retired 2026-07-24:
    #: https://api-docs.deepseek.com/quick_start/pricing); called with thinking disabled
    mood_llm_model: str = "deepseek-v4-flash"
    mood_llm_api_key: SecretStr
    mood_fallback_provider: Literal["deepseek", "gemini"] = "gemini"
    #: Gemini 3.5 Flash-Lite (gemini-2.0-flash-lite is shut down:
    #: https://ai.google.dev/gemini-api/docs/deprecations); called at thinkingLevel "minimal".
    #: The role renders both ids (roles/mood_agent, checked equal by test_mood_agent_settings.py)
    mood_fallback_model: str = "gemini-3.5-flash-lite"
    mood_fallback_api_key: SecretStr
    deepseek_base_url: HttpUrl = HttpUrl("https://api.deepseek.com")
    gemini_base_url: HttpUrl = HttpUrl("https://generativelanguage.googleapis.com")

    mood_smoothing_factor: float = Field(default=0.3, ge=0, le=1)
    mood_spike_threshold: float = Field(default=0.5, ge=0, le=1)
    #: hot-path Redis (local-redis), DB 9: previous mood state
    redis_url: RedisDsn = SecretStr("redis://localhost/9")

    #: total time /analyze waits for the LLMs before the local classifier answers
    mood_llm_budget_ms: int = Field(default=150, ge=1, le=5000)
    #: the fallback LLM is asked too when the primary has not answered after this long
    mood_hedge_after_ms: int = Field(default=60, ge=0, le=5000)
    #: hard deadline of one /analyze from the handler's start, less the event loop's current lag
    #: (the wait before the handler): the LLMs get what is left of it minus ``mood_reserve_ms``
    #: (lexicon, smoothing, Redis write, JSON), capped by the budget above
    mood_deadline_ms: int = Field(default=180, ge=10, le=10000)
    mood_reserve_ms: int = Field(default=15, ge=0, le=1000)
    #: LLM calls in flight per worker; beyond, requests are answered by the lexicon at once
    mood_llm_max_inflight: int = Field(default=32, ge=1, le=10000)
    #: no LLM call is started while the worker's event loop lags more than this (CPU saturated)
    mood_shed_lag_ms: int = Field(default=20, ge=1, le=10000)
    #: each Redis read/write of the previous frame is abandoned after this long
    mood_redis_timeout_ms: int = Field(default=20, ge=1, le=5000)
    #: how long the previous frame is kept (spec 03: mood frames TTL 5 min)
    mood_frame_ttl_s: int = Field(default=300, ge=1)
    #: "false" keeps the agent on the local classifier only (no LLM calls)
    mood_llm_enabled: bool = True
