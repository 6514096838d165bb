"""Settings of llm_orchestrator: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(LlmOrchestratorSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = LlmOrchestratorSettings.load()
    assert settings.app_name == "llm_orchestrator"
    assert redis_db(settings.celery_broker_url) == 11
    assert redis_db(settings.celery_result_backend) == 11
    assert redis_db(settings.shard_routing_redis_url) == 12


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"LLM_FALLBACK_PROVIDERS": "gemini,qwen"})
    settings = LlmOrchestratorSettings.load()
    assert settings.llm_fallback_providers == ["gemini", "qwen"]


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"LLM_FALLBACK_PROVIDERS": "gemini,gpt5"})
    with pytest.raises(SettingsError) as info:
        LlmOrchestratorSettings.load()
    assert list(info.value.problems) == ["LLM_FALLBACK_PROVIDERS"]
    assert "LLM_FALLBACK_PROVIDERS" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        LlmOrchestratorSettings.load()
    assert set(info.value.problems) == set(write_env.required)


def test_model_ids_are_current(write_env: EnvWriter) -> None:
    """Retired ids (deepseek-chat, gemini-2.0-flash, claude-sonnet-4-20250514) and Cohere's
    misspelt "embed-multilingual-v3" are gone from the defaults."""
    write_env()
    settings = LlmOrchestratorSettings.load()
    assert settings.deepseek_model == "deepseek-v4-flash" and settings.deepseek_thinking == "disabled"
    assert settings.gemini_model == "gemini-3.8-flash"
    assert settings.claude_model == "claude-sonnet-5-5"
    assert settings.embedding_model == "embed-multilingual-v3.0" and settings.embedding_dim == 1024


def test_cohere_input_types(write_env: EnvWriter) -> None:
    """/v2/embed needs input_type with the v3 models: documents as search_document, queries as
    search_query."""
    write_env()
    settings = LlmOrchestratorSettings.load()
    assert (settings.embedding_input_type_document, settings.embedding_input_type_query) == (
        "search_document",
        "search_query",
    )
    assert settings.embedding_type == "float"
    write_env({"EMBEDDING_INPUT_TYPE_QUERY": "query"})
    with pytest.raises(SettingsError) as info:
        LlmOrchestratorSettings.load()
    assert list(info.value.problems) == ["EMBEDDING_INPUT_TYPE_QUERY"]
