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
    qwen_api_key: SecretStr
    qwen_model: str = "qwen-plus"
    qwen_base_url: HttpUrl = HttpUrl("https://dashscope-intl.aliyuncs.com/compatible-mode/v1")
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

    intelistyle_api_key: SecretStr
    intelistyle_api_url: HttpUrl = HttpUrl("https://api.intelistyle.com/v3")

    # timeouts (seconds)
    llm_timeout: float = Field(default=15, gt=0)
    embedding_timeout: float = Field(default=3, gt=0)

    @field_validator("llm_fallback_providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(PROVIDERS))
        if unknown:
            raise ValueError(f"unknown providers {unknown}; known: {', '.join(PROVIDERS)}")
        return value
