"""Settings of apify: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from apify.settings import ApifySettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(ApifySettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = ApifySettings.load()
    assert settings.app_name == "apify"
    assert redis_db(settings.redis_url) == 7


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"APIFY_TOKEN": "apify_api_xxx"})
    settings = ApifySettings.load()
    assert settings.apify_token.get_secret_value() == "apify_api_xxx"
    assert settings.celery_visibility_timeout_s == 21600


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"REDIS_URL": "http://10.1.0.4:6379/7"})
    with pytest.raises(SettingsError) as info:
        ApifySettings.load()
    assert list(info.value.problems) == ["REDIS_URL"]
    assert "REDIS_URL" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        ApifySettings.load()
    assert set(info.value.problems) == set(write_env.required)
