"""Settings of scraper: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from scraper.settings import ScraperSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(ScraperSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = ScraperSettings.load()
    assert settings.app_name == "scraper"
    assert redis_db(settings.redis_url) == 7


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env(
        {
            "STAGING_DB_URL": "postgresql://scraper:pw@10.1.0.8:6432/unde_staging",
            "KZ_ZARA_STORES": "6643,9204",
        }
    )
    settings = ScraperSettings.load()
    assert settings.kz_zara_stores == [6643, 9204]


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"AVAILABILITY_FRESH_HOURS": "zero"})
    with pytest.raises(SettingsError) as info:
        ScraperSettings.load()
    assert list(info.value.problems) == ["AVAILABILITY_FRESH_HOURS"]
    assert "AVAILABILITY_FRESH_HOURS" in str(info.value)
