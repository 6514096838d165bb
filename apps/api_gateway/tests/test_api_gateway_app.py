"""The api_gateway HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m api_gateway`` entry point."""

from __future__ import annotations

import pytest

from api_gateway.app import create
from api_gateway.settings import ApiGatewaySettings
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
    return env_writer(ApiGatewaySettings)


def test_health_and_metrics(write_env: EnvWriter, pg: PostgresHandle, redis_url: str) -> None:
    write_env(
        {"PRODUCTION_DB_URL": pg.dsn, "SHARD_0_DB_URL": pg.dsn, "REDIS_URL": redis_url.replace("/0", "/14")}
    )
    assert_health_ok(
        create(ApiGatewaySettings.load()), "api_gateway", ["production_db", "redis", "shard_0_db"]
    )


def test_health_names_unreachable_dependencies(write_env: EnvWriter) -> None:
    write_env(
        {
            "PRODUCTION_DB_URL": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x",
            "SHARD_0_DB_URL": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x",
            "REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/14",
            "HEALTH_CHECK_TIMEOUT_S": "1",
            "DB_CONNECT_TIMEOUT_S": "1",
        }
    )
    assert_health_fails(
        create(ApiGatewaySettings.load()), ["production_db", "redis", "shard_0_db"], secret="hunter2"
    )


def test_entry_point_serves_and_logs_json(write_env: EnvWriter) -> None:
    assert_entry_point("api_gateway", write_env)
