"""The llm_reranker HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m llm_reranker`` entry point."""

from __future__ import annotations

import pytest

from llm_reranker.app import create
from llm_reranker.settings import LlmRerankerSettings
from unde_common.testing import EnvWriter, EnvWriterFactory, assert_entry_point, assert_health_ok


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(LlmRerankerSettings)


def test_health_and_metrics(write_env: EnvWriter) -> None:
    write_env()
    assert_health_ok(create(LlmRerankerSettings.load()), "llm_reranker", [])


def test_entry_point_serves_and_logs_json(write_env: EnvWriter) -> None:
    assert_entry_point("llm_reranker", write_env)
