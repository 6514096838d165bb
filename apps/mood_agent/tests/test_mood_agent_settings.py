"""Settings of mood_agent: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mood_agent.settings import MoodAgentSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(MoodAgentSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = MoodAgentSettings.load()
    assert settings.app_name == "mood_agent"
    assert (settings.port, settings.workers) == (8080, 4)
    assert redis_db(settings.redis_url) == 9


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"MOOD_PORT": "8090", "MOOD_LLM_API_KEY": "k"})
    settings = MoodAgentSettings.load()
    assert settings.port == 8090


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"MOOD_SMOOTHING_FACTOR": "2"})
    with pytest.raises(SettingsError) as info:
        MoodAgentSettings.load()
    assert list(info.value.problems) == ["MOOD_SMOOTHING_FACTOR"]
    assert "MOOD_SMOOTHING_FACTOR" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        MoodAgentSettings.load()
    assert set(info.value.problems) == set(write_env.required)


@pytest.mark.parametrize(
    ("variable", "field"),
    [("mood_agent_llm_model", "mood_llm_model"), ("mood_agent_fallback_model", "mood_fallback_model")],
)
def test_the_role_renders_the_settings_model_ids(variable: str, field: str) -> None:
    """The model ids live in the settings defaults; the role's defaults (and argument specs) must be
    the same ids, so a deployed host runs what the app was tested with."""
    role = Path(__file__).resolve().parents[3] / "roles" / "mood_agent"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    default = MoodAgentSettings.model_fields[field].default
    assert defaults[variable] == default
    assert specs["argument_specs"]["main"]["options"][variable]["default"] == default
