"""The persona_agent HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m persona_agent`` entry point."""

from __future__ import annotations

import pytest

from persona_agent.app import create
from persona_agent.settings import PersonaAgentSettings
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
    return env_writer(PersonaAgentSettings)


def test_health_and_metrics(write_env: EnvWriter, pg: PostgresHandle, redis_url: str) -> None:
    write_env({"SHARD_0_DB_URL": pg.dsn, "REDIS_URL": redis_url.replace("/0", "/13")})
    assert_health_ok(create(PersonaAgentSettings.load()), "persona_agent", ["redis", "shard_0_db"])


def test_health_names_unreachable_dependencies(write_env: EnvWriter) -> None:
    write_env(
        {
            "SHARD_0_DB_URL": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x",
            "REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/13",
            "HEALTH_CHECK_TIMEOUT_S": "1",
            "DB_CONNECT_TIMEOUT_S": "1",
        }
    )
    assert_health_fails(create(PersonaAgentSettings.load()), ["redis", "shard_0_db"], secret="hunter2")


def test_entry_point_serves_and_logs_json(write_env: EnvWriter) -> None:
    assert_entry_point("persona_agent", write_env)
