"""Settings of embed_batch: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from embed_batch.settings import EmbedBatchSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(EmbedBatchSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = EmbedBatchSettings.load()
    assert settings.app_name == "embed_batch"
    assert (settings.port, settings.workers) == (8004, 1)
    assert redis_db(settings.redis_url) == 7


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"S3_ACCESS_KEY": "ak", "S3_SECRET_KEY": "sk", "BATCH_SIZE": "250"})
    settings = EmbedBatchSettings.load()
    assert settings.batch_size == 250


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"BATCH_SIZE": "lots"})
    with pytest.raises(SettingsError) as info:
        EmbedBatchSettings.load()
    assert list(info.value.problems) == ["BATCH_SIZE"]
    assert "BATCH_SIZE" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        EmbedBatchSettings.load()
    assert set(info.value.problems) == set(write_env.required)
