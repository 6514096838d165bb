"""The voice HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m voice`` entry point."""

from __future__ import annotations

import pytest

from unde_common.testing import (
    EnvWriter,
    EnvWriterFactory,
    assert_entry_point,
    assert_health_fails,
    assert_health_ok,
    free_port,
)
from voice.app import create
from voice.settings import VoiceSettings


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(VoiceSettings)


def test_health_and_metrics(write_env: EnvWriter, redis_url: str) -> None:
    write_env({"REDIS_URL": redis_url.replace("/0", "/10")})
    assert_health_ok(create(VoiceSettings.load()), "voice", ["redis"])


def test_health_names_unreachable_dependencies(write_env: EnvWriter) -> None:
    write_env({"REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/10", "HEALTH_CHECK_TIMEOUT_S": "1"})
    assert_health_fails(create(VoiceSettings.load()), ["redis"], secret="hunter2")


def test_entry_point_serves_and_logs_json(write_env: EnvWriter) -> None:
    assert_entry_point("voice", write_env)
