"""Settings of ximilar_sync: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory
from ximilar_sync.settings import XimilarSyncSettings


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(XimilarSyncSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = XimilarSyncSettings.load()
    assert settings.app_name == "ximilar_sync"
    assert redis_db(settings.redis_url) == 7


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"XIMILAR_API_TOKEN": "tok", "XIMILAR_COLLECTION_ID": "col-1"})
    settings = XimilarSyncSettings.load()
    assert settings.ximilar_collection_id == "col-1"


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"BATCH_SIZE": "-1"})
    with pytest.raises(SettingsError) as info:
        XimilarSyncSettings.load()
    assert list(info.value.problems) == ["BATCH_SIZE"]
    assert "BATCH_SIZE" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        XimilarSyncSettings.load()
    assert set(info.value.problems) == set(write_env.required)
