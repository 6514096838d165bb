"""Settings of voice: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest

from unde_common.settings import SettingsError, redis_db
from unde_testkit.testing import EnvWriter, EnvWriterFactory
from voice.settings import VoiceSettings


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(VoiceSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = VoiceSettings.load()
    assert settings.app_name == "voice"
    assert (settings.port, settings.ws_port, settings.workers) == (8080, 8081, 1)
    assert settings.elevenlabs_model == "eleven_v3"
    assert (settings.audio_format, settings.audio_chunk_size, settings.elevenlabs_timeout) == (
        "mp3_44100_128",
        4096,
        5,
    )
    assert redis_db(settings.redis_url) == 10


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"VOICE_WS_PORT": "9081", "ELEVENLABS_API_KEY": "k", "ELEVENLABS_VOICE_ID": "v"})
    settings = VoiceSettings.load()
    assert settings.ws_port == 9081
    assert settings.port == 8080


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"VOICE_HTTP_PORT": "eighty"})
    with pytest.raises(SettingsError) as info:
        VoiceSettings.load()
    assert list(info.value.problems) == ["VOICE_HTTP_PORT / PORT"]
    assert "VOICE_HTTP_PORT / PORT" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        VoiceSettings.load()
    assert set(info.value.problems) == set(write_env.required)
