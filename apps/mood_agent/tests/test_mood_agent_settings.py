"""Settings of mood_agent: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

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
