"""Settings of the external providers (LLMs, embedding, Intelistyle): a mixin of LlmOrchestratorSettings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, field_validator

from unde_common.settings import CommaList, UndeSettings

PROVIDERS = ("deepseek", "gemini", "claude", "qwen")
Provider = Literal["deepseek", "gemini", "claude", "qwen"]
#: input_type values of Cohere /v2/embed for text (https://docs.cohere.com/reference/embed)
EmbedInputType = Literal["search_document", "search_query", "classification", "clustering"]


class ProviderSettings(UndeSettings):
    """Provider keys, model ids, base URLs, prices and timeouts."""

    # LLM providers: current model ids (the retired deepseek-chat, gemini-2.0-flash and
    # claude-sonnet-4-20250514 answer errors now)
    deepseek_api_key: SecretStr
    #: DeepSeek V4 Flash; deepseek-chat (its non-thinking alias) was retired on 2026-07-24
    #: (https://api-docs.deepseek.com/quick_start/pricing). V4 thinks unless the request says
    #: {"thinking": {"type": "disabled"}} (https://api-docs.deepseek.com/guides/thinking_mode)
    deepseek_model: str = "deepseek-v4-flash"
    deepseek_thinking: Literal["enabled", "disabled"] = "disabled"
    deepseek_base_url: HttpUrl = HttpUrl("https://api.deepseek.com")
    gemini_api_key: SecretStr
    #: Gemini 3.8 Flash (GA; gemini-2.0-flash is shut down: https://ai.google.dev/gemini-api/docs/deprecations);
    #: thinks at MEDIUM unless generationConfig.thinkingConfig.thinkingLevel says otherwise
    #: (https://ai.google.dev/gemini-api/docs/thinking)
    gemini_model: str = "gemini-3.8-flash"
    gemini_thinking_level: Literal["low", "medium", "high"] = "low"
    gemini_base_url: HttpUrl = HttpUrl("https://generativelanguage.googleapis.com")
    claude_api_key: SecretStr
    #: Claude Sonnet 5.5, the current Sonnet (claude-sonnet-4-20250514 is retired:
    #: https://platform.claude.com/docs/en/about-claude/model-deprecations,
    #: https://platform.claude.com/docs/en/about-claude/models/overview)
    claude_model: str = "claude-sonnet-5-5"
    claude_base_url: HttpUrl = HttpUrl("https://api.anthropic.com")
    #: the anthropic-version header of every Messages call (https://docs.claude.com/en/api/versioning)
    anthropic_version: str = "2023-06-01"
    #: output_config.effort: Sonnet 5.5 thinks adaptively and takes no sampling parameters; "low"
    #: keeps a dialogue turn short (https://platform.claude.com/docs/en/about-claude/models/overview)
    claude_effort: Literal["low", "medium", "high", "xhigh", "max"] | None = "low"
    qwen_api_key: SecretStr
    qwen_model: str = "qwen-plus"
    qwen_base_url: HttpUrl = HttpUrl("https://dashscope-intl.aliyuncs.com/compatible-mode/v1")
    #: DashScope's enable_thinking in OpenAI-compatible mode (Qwen3 hybrid models); off for dialogue
    qwen_enable_thinking: bool = False
    llm_primary_provider: Provider = "deepseek"
    llm_fallback_providers: CommaList = Field(default_factory=lambda: ["gemini", "claude", "qwen"])

    # embeddings for semantic retrieval: Cohere POST /v2/embed (https://docs.cohere.com/reference/embed)
    embedding_provider: Literal["cohere"] = "cohere"
    #: Cohere's id is "embed-multilingual-v3.0" (1024 dimensions; the v3 models require input_type)
    embedding_model: str = "embed-multilingual-v3.0"
    embedding_api_key: SecretStr
    embedding_base_url: HttpUrl = HttpUrl("https://api.cohere.com")
    embedding_dim: int = Field(default=1024, ge=1)
    #: input_type of /v2/embed: what is stored (messages, episodes) is embedded as
    #: "search_document", what retrieval looks up as "search_query"; vectors of one type only match
    #: the other (https://docs.cohere.com/reference/embed)
    embedding_input_type_document: EmbedInputType = "search_document"
    embedding_input_type_query: EmbedInputType = "search_query"
    #: embedding_types of /v2/embed (response field embeddings.<type>)
    embedding_type: Literal["float", "int8", "uint8", "binary", "ubinary"] = "float"

    #: texts per /v2/embed call: at most 96 (https://docs.cohere.com/reference/embed, "texts ... max 96")
    embedding_batch_size: int = Field(default=96, ge=1, le=96)

    intelistyle_api_key: SecretStr
    intelistyle_api_url: HttpUrl = HttpUrl("https://api.intelistyle.com/v3")
    #: Intelistyle publishes no API reference: path and auth header are assumptions, settings so the
    #: real contract can be followed without a code change (see providers/intelistyle.py)
    intelistyle_recommend_path: str = "/recommendations"
    intelistyle_auth_header: str = "x-api-key"
    intelistyle_timeout_s: float = Field(default=3.0, gt=0)

    # timeouts (seconds)
    #: one LLM attempt at most (the router gives each min(llm_timeout, time left of the chain))
    llm_timeout: float = Field(default=15, gt=0)
    #: until an attempt's first answer text (streamed); a provider silent that long is skipped
    llm_first_byte_timeout_s: float = Field(default=5.0, gt=0)
    #: the router starts no attempt with less time than this left before the chain's deadline
    llm_min_attempt_s: float = Field(default=0.2, ge=0)
    llm_max_output_tokens: int = Field(default=1024, ge=1)
    #: None: each model's default (Claude Sonnet 5.5 and Gemini 3 are never sent one)
    llm_temperature: float | None = Field(default=None, ge=0, le=2)
    embedding_timeout: float = Field(default=3, gt=0)

    # prices, USD per 1M tokens, for llm_orchestrator_cost_usd (input = uncached input tokens'
    # price: cache hits are counted at it too, so the figure is an upper bound). Check them when a
    # provider changes its price list.
    #: https://api-docs.deepseek.com/quick_start/pricing: Flash (deepseek-v4-flash is served as
    #: deepseek-flash) cache-miss input $0.30 / output $1.20 at peak, half off-peak; peak counted
    deepseek_price_input_per_1m: float = Field(default=0.30, ge=0)
    deepseek_price_output_per_1m: float = Field(default=1.20, ge=0)
    #: https://ai.google.dev/gemini-api/docs/pricing: Gemini 3.8 Flash $0.75 / $3.75 (output incl.
    #: thinking) through 2026-12-31, $1.50 / $7.50 from 2027-01-01
    gemini_price_input_per_1m: float = Field(default=0.75, ge=0)
    gemini_price_output_per_1m: float = Field(default=3.75, ge=0)
    #: https://platform.claude.com/docs/en/about-claude/pricing (Sonnet 5.5 model page): $2 / $10
    claude_price_input_per_1m: float = Field(default=2.0, ge=0)
    claude_price_output_per_1m: float = Field(default=10.0, ge=0)
    #: https://www.alibabacloud.com/help/en/model-studio/billing-for-model-studio: qwen-plus
    #: (Singapore) from $0.40 input / $1.20 output (the 0-128k tier)
    qwen_price_input_per_1m: float = Field(default=0.40, ge=0)
    qwen_price_output_per_1m: float = Field(default=1.20, ge=0)

    @field_validator("llm_fallback_providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(PROVIDERS))
        if unknown:
            raise ValueError(f"unknown providers {unknown}; known: {', '.join(PROVIDERS)}")
        return value
