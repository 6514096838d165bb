"""Settings of llm_reranker: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from llm_reranker.settings import LlmRerankerSettings
from unde_common.settings import SettingsError
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(LlmRerankerSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = LlmRerankerSettings.load()
    assert settings.app_name == "llm_reranker"
    assert (settings.port, settings.workers) == (8002, 2)


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"GEMINI_API_KEY": "k", "GEMINI_MODEL": "gemini-2.5-pro"})
    settings = LlmRerankerSettings.load()
    assert settings.gemini_model == "gemini-2.5-pro"


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"VISUAL_WEIGHT": "heavy"})
    with pytest.raises(SettingsError) as info:
        LlmRerankerSettings.load()
    assert list(info.value.problems) == ["VISUAL_WEIGHT"]
    assert "VISUAL_WEIGHT" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        LlmRerankerSettings.load()
    assert set(info.value.problems) == set(write_env.required)
