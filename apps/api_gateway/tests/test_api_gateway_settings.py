"""Settings of api_gateway: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from api_gateway.settings import ApiGatewaySettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.gateway_testbed import jwt_test_keys
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    writer = env_writer(ApiGatewaySettings)
    # a real key, not the placeholder every required setting gets
    writer.required["JWT_SIGNING_KEYS"] = jwt_test_keys()["JWT_SIGNING_KEYS"]
    return writer


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = ApiGatewaySettings.load()
    assert settings.app_name == "api_gateway"
    assert (settings.port, settings.workers) == (8000, 4)
    assert redis_db(settings.redis_url) == 14
    assert redis_db(settings.shard_routing_redis_url) == 12
    assert redis_db(settings.dialogue_broker_url) == 11
    assert redis_db(settings.recognition_broker_url) == 6


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"S3_USER_MEDIA_ACCESS_KEY": "ak", "S3_USER_MEDIA_SECRET_KEY": "sk", "WORKERS": "8"})
    settings = ApiGatewaySettings.load()
    assert settings.workers == 8


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"DIALOGUE_BROKER_URL": "amqp://localhost//"})
    with pytest.raises(SettingsError) as info:
        ApiGatewaySettings.load()
    assert list(info.value.problems) == ["DIALOGUE_BROKER_URL"]
    assert "DIALOGUE_BROKER_URL" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        ApiGatewaySettings.load()
    assert set(info.value.problems) == set(write_env.required)
