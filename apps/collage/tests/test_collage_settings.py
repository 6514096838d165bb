"""Settings of collage: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from collage.settings import CollageSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(CollageSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = CollageSettings.load()
    assert settings.app_name == "collage"
    assert redis_db(settings.redis_url) == 8


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"S3_ACCESS_KEY": "ak", "S3_SECRET_KEY": "sk"})
    settings = CollageSettings.load()
    assert settings.collage_quality == 95
    assert settings.collage_subsampling == 0


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"COLLAGE_QUALITY": "101"})
    with pytest.raises(SettingsError) as info:
        CollageSettings.load()
    assert list(info.value.problems) == ["COLLAGE_QUALITY"]
    assert "COLLAGE_QUALITY" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        CollageSettings.load()
    assert set(info.value.problems) == set(write_env.required)
