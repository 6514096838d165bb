"""The embed_batch HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m embed_batch`` entry point."""

from __future__ import annotations

import pytest

from embed_batch.app import create
from embed_batch.settings import EmbedBatchSettings
from unde_common.testing import (
    EnvWriter,
    EnvWriterFactory,
    PostgresHandle,
    assert_entry_point,
    assert_health_fails,
    assert_health_ok,
    free_port,
)


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(EmbedBatchSettings)


def test_health_and_metrics(write_env: EnvWriter, pg: PostgresHandle, redis_url: str) -> None:
    write_env({"PRODUCTION_DB_URL": pg.dsn, "REDIS_URL": redis_url})
    assert_health_ok(create(EmbedBatchSettings.load()), "embed_batch", ["production_db", "redis"])


def test_health_names_unreachable_dependencies(write_env: EnvWriter) -> None:
    write_env(
        {
            "PRODUCTION_DB_URL": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x",
            "REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/7",
            "HEALTH_CHECK_TIMEOUT_S": "1",
            "DB_CONNECT_TIMEOUT_S": "1",
        }
    )
    assert_health_fails(create(EmbedBatchSettings.load()), ["production_db", "redis"], secret="hunter2")


def test_entry_point_serves_and_logs_json(write_env: EnvWriter) -> None:
    assert_entry_point("embed_batch", write_env)
