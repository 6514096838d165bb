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


def test_signing_keys_are_checked_and_named(write_env: EnvWriter) -> None:
    two = jwt_test_keys("k1", "k2", current="k2")
    write_env({"JWT_SIGNING_KEYS": two["JWT_SIGNING_KEYS"], "JWT_CURRENT_KID": "k2"})
    settings = ApiGatewaySettings.load()
    assert settings.signing_kid() == "k2"
    write_env({"JWT_SIGNING_KEYS": '{"k1": "not a pem"}'})
    with pytest.raises(SettingsError) as info:
        ApiGatewaySettings.load()
    assert list(info.value.problems) == ["JWT_SIGNING_KEYS"] and "not a PEM" in str(info.value)
    # several keys and none named current; a current kid that is not listed
    for values, words in (
        ({"JWT_SIGNING_KEYS": two["JWT_SIGNING_KEYS"]}, "must name the signing key"),
        ({"JWT_SIGNING_KEYS": two["JWT_SIGNING_KEYS"], "JWT_CURRENT_KID": "k9"}, "is not one of"),
    ):
        write_env(values)
        with pytest.raises(SettingsError) as info:
            ApiGatewaySettings.load()
        assert words in str(info.value)
    # the secret itself never appears in the error
    assert "PRIVATE KEY" not in str(info.value)


def test_rate_limits_merge_with_the_defaults_and_bad_ones_are_named(write_env: EnvWriter) -> None:
    write_env({"RATE_LIMITS": '{"chat": {"rate": 2, "burst": 4}}'})
    settings = ApiGatewaySettings.load()
    assert (settings.rate_limits["chat"].rate, settings.rate_limits["chat"].burst) == (2, 4)
    assert settings.rate_limits["replay"].rate == 1.0
    write_env({"RATE_LIMITS": '{"chat": {"rate": 0, "burst": 4}}'})
    with pytest.raises(SettingsError) as info:
        ApiGatewaySettings.load()
    assert next(iter(info.value.problems)).startswith("RATE_LIMITS")
