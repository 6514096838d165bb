"""Settings of persona_agent: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from persona_agent.settings import PersonaAgentSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(PersonaAgentSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = PersonaAgentSettings.load()
    assert settings.app_name == "persona_agent"
    assert (settings.port, settings.workers) == (8080, 4)
    assert redis_db(settings.shard_routing_redis_url) == 12
    assert redis_db(settings.redis_url) == 13


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"PERSONA_PORT": "8081", "PERSONA_CONTRACT_VERSION": "0.8.1"})
    settings = PersonaAgentSettings.load()
    assert settings.port == 8081
    assert settings.persona_contract_version == "0.8.1"


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"PERSONA_CONTRACT_VERSION": "v1"})
    with pytest.raises(SettingsError) as info:
        PersonaAgentSettings.load()
    assert list(info.value.problems) == ["PERSONA_CONTRACT_VERSION"]
    assert "PERSONA_CONTRACT_VERSION" in str(info.value)
