"""Settings of llm_reranker: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
    write_env({"GEMINI_API_KEY": "k", "GEMINI_MODEL": "gemini-3.8-flash"})
    settings = LlmRerankerSettings.load()
    assert settings.gemini_model == "gemini-3.8-flash"


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


def test_the_role_renders_the_settings_model_id() -> None:
    """The model id lives in the settings default; the role's default (and its argument spec)
    must be that same id, so a deployed host runs what the app was tested with."""
    role = Path(__file__).resolve().parents[3] / "roles" / "llm_reranker"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    default = LlmRerankerSettings.model_fields["gemini_model"].default
    assert defaults["llm_reranker_gemini_model"] == default
    assert specs["argument_specs"]["main"]["options"]["llm_reranker_gemini_model"]["default"] == default


def test_thinking_is_minimal_unless_set(write_env: EnvWriter) -> None:
    write_env()
    assert LlmRerankerSettings.load().gemini_thinking_level == "minimal"
    write_env({"GEMINI_THINKING_LEVEL": "off"})
    with pytest.raises(SettingsError) as info:
        LlmRerankerSettings.load()
    assert list(info.value.problems) == ["GEMINI_THINKING_LEVEL"]
