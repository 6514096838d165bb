"""The embedder HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m embedder`` entry point."""

from __future__ import annotations

import pytest

from embedder.app import create
from embedder.settings import EmbedderSettings
from unde_common.testing import EnvWriter, EnvWriterFactory, assert_entry_point, assert_health_ok


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(EmbedderSettings)


def test_health_and_metrics(write_env: EnvWriter) -> None:
    write_env()
    assert_health_ok(create(EmbedderSettings.load()), "embedder", [])


def test_entry_point_serves_and_logs_json(write_env: EnvWriter) -> None:
    assert_entry_point("embedder", write_env)
