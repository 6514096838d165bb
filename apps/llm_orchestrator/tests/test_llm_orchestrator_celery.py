"""Celery wiring of llm_orchestrator: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A llm_orchestrator.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

import importlib
from typing import Final

import pytest
from celery import Celery

from llm_orchestrator.celery_app import make_celery
from llm_orchestrator.schedule import QUEUES
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_common.settings import redis_db
from unde_common.testing import (
    CronSpec,
    EnvWriter,
    EnvWriterFactory,
    assert_beat_schedule,
    assert_lazy_celery_module,
    assert_task_routes,
    assert_worker_serves_metrics,
    free_port,
)

ANY_DAY: Final = set(range(7))
#: entry → (minute, hour, day_of_week, queue), as spec 01 §18 says
EXPECTED: Final[dict[str, CronSpec]] = {
    "enrichment_ttl_recovery": ({0}, {0, 6, 12, 18}, ANY_DAY, "enrichment"),  # every 6 hours at :00
    "extraction_review_sample": ({0}, {6}, ANY_DAY, "enrichment"),  # daily 06:00
}
TASK_QUEUES: Final[dict[str, str]] = {
    "llm_orchestrator.generate_response": "dialogue_queue",
    "llm_orchestrator.enrich_message": "enrichment",
    "llm_orchestrator.enrichment_ttl_recovery": "enrichment",
    "llm_orchestrator.extraction_review_sample": "enrichment",
}


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(LlmOrchestratorSettings)


@pytest.fixture
def celery(write_env: EnvWriter) -> Celery:
    write_env()
    app = make_celery(LlmOrchestratorSettings.load())
    importlib.import_module("llm_orchestrator.tasks")  # registers the shared tasks
    return app


def test_beat_schedule_is_spec_01_section_18(celery: Celery) -> None:
    assert_beat_schedule(celery, EXPECTED)


def test_tasks_route_to_their_queues(celery: Celery) -> None:
    assert_task_routes(celery, QUEUES, TASK_QUEUES)


def test_broker_comes_from_settings(celery: Celery) -> None:
    assert redis_db(celery.conf.broker_url) == 11
    assert redis_db(celery.conf.result_backend) == 11
    assert celery.conf.task_time_limit is None
    assert celery.conf.task_annotations == {
        "llm_orchestrator.generate_response": {"time_limit": 30, "soft_time_limit": 25}
    }


def test_module_attribute_app_is_built_lazily(write_env: EnvWriter) -> None:
    write_env()
    assert_lazy_celery_module("llm_orchestrator.celery_app", "llm_orchestrator")


def test_worker_command_starts_and_serves_metrics(write_env: EnvWriter, redis_url: str) -> None:
    port = free_port()
    broker = redis_url.replace("/0", "/11")
    env_file = write_env(
        {"CELERY_BROKER_URL": broker, "CELERY_RESULT_BACKEND": broker, "METRICS_PORT": str(port)}
    )
    assert_worker_serves_metrics("llm_orchestrator", QUEUES, env_file, port)
