"""Settings of photo_downloader: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from photo_downloader.settings import PhotoDownloaderSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(PhotoDownloaderSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = PhotoDownloaderSettings.load()
    assert settings.app_name == "photo_downloader"
    assert redis_db(settings.redis_url) == 7


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"S3_ACCESS_KEY": "ak", "S3_SECRET_KEY": "sk", "BATCH_SIZE": "50"})
    settings = PhotoDownloaderSettings.load()
    assert settings.batch_size == 50


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"CONCURRENT_DOWNLOADS": "0"})
    with pytest.raises(SettingsError) as info:
        PhotoDownloaderSettings.load()
    assert list(info.value.problems) == ["CONCURRENT_DOWNLOADS"]
    assert "CONCURRENT_DOWNLOADS" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        PhotoDownloaderSettings.load()
    assert set(info.value.problems) == set(write_env.required)
