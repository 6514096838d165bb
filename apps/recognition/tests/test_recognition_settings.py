"""Settings of recognition: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from recognition.settings import RecognitionSettings
from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(RecognitionSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = RecognitionSettings.load()
    assert settings.app_name == "recognition"
    assert redis_db(settings.celery_broker_url) == 6
    assert redis_db(settings.celery_result_backend) == 6
    # feature flags, spec 01 §19b
    assert settings.tagging_mode == "on_demand" and settings.min_candidates == 3
    assert settings.availability_window == timedelta(hours=24)
    assert (settings.confidence_high, settings.confidence_medium) == (0.85, 0.50)


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"TAGGING_MODE": "always", "AVAILABILITY_WINDOW": "90m"})
    settings = RecognitionSettings.load()
    assert settings.tagging_mode == "always"
    assert settings.availability_window == timedelta(minutes=90)


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"TAGGING_MODE": "sometimes"})
    with pytest.raises(SettingsError) as info:
        RecognitionSettings.load()
    assert list(info.value.problems) == ["TAGGING_MODE"]
    assert "TAGGING_MODE" in str(info.value)
