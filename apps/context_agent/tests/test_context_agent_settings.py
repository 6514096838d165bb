"""Settings of context_agent: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from context_agent.settings import ContextAgentSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(ContextAgentSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = ContextAgentSettings.load()
    assert settings.app_name == "context_agent"
    assert (settings.port, settings.workers) == (8080, 4)
    assert redis_db(settings.redis_url) == 15


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"CONTEXT_PORT": "8082", "WEATHER_API_KEY": "k", "WEATHER_CACHE_TTL": "60"})
    settings = ContextAgentSettings.load()
    assert settings.port == 8082
    assert settings.weather_cache_ttl == 60


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"WEATHER_API_URL": "not a url"})
    with pytest.raises(SettingsError) as info:
        ContextAgentSettings.load()
    assert list(info.value.problems) == ["WEATHER_API_URL"]
    assert "WEATHER_API_URL" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        ContextAgentSettings.load()
    assert set(info.value.problems) == set(write_env.required)
