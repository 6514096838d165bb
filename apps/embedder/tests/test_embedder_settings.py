"""Settings of embedder: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedder.settings import EmbedderSettings
from unde_common.settings import SettingsError
from unde_testkit.testing import EnvWriter, EnvWriterFactory


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(EmbedderSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = EmbedderSettings.load()
    assert settings.app_name == "embedder"
    assert (settings.port, settings.workers) == (8003, 1)


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"MODEL_PATH": "/models/m.onnx"})
    settings = EmbedderSettings.load()
    assert settings.model_path == Path("/models/m.onnx")


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"PORT": "http"})
    with pytest.raises(SettingsError) as info:
        EmbedderSettings.load()
    assert list(info.value.problems) == ["PORT"]
    assert "PORT" in str(info.value)
