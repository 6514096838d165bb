"""Celery wiring of embed_batch: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A embed_batch.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

import importlib
from typing import Final

import pytest
from celery import Celery

from embed_batch.celery_app import make_celery
from embed_batch.schedule import QUEUES
from embed_batch.settings import EmbedBatchSettings
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

#: entry → (minute, hour, day_of_week, queue), as spec 01 §18 says
EXPECTED: Final[dict[str, CronSpec]] = {
    "embedding_batch_sync": ({0}, {2}, {1}, "embed_batch"),  # Monday 02:00
    "embedding_progressive": ({0}, {3}, {3}, "embed_batch"),  # Wednesday 03:00
}
TASK_QUEUES: Final[dict[str, str]] = {
    "embed_batch.embedding_batch_sync": "embed_batch",
    "embed_batch.embedding_progressive": "embed_batch",
}


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(EmbedBatchSettings)


@pytest.fixture
def celery(write_env: EnvWriter) -> Celery:
    write_env()
    app = make_celery(EmbedBatchSettings.load())
    importlib.import_module("embed_batch.tasks")  # registers the shared tasks
    return app


def test_beat_schedule_is_spec_01_section_18(celery: Celery) -> None:
    assert_beat_schedule(celery, EXPECTED)


def test_tasks_route_to_their_queues(celery: Celery) -> None:
    assert_task_routes(celery, QUEUES, TASK_QUEUES)


def test_broker_comes_from_settings(celery: Celery) -> None:
    assert redis_db(celery.conf.broker_url) == 7
    assert celery.conf.task_ignore_result
    assert celery.conf.broker_transport_options == {"visibility_timeout": 57600}


def test_module_attribute_app_is_built_lazily(write_env: EnvWriter) -> None:
    write_env()
    assert_lazy_celery_module("embed_batch.celery_app", "embed_batch")


def test_worker_command_starts_and_serves_metrics(write_env: EnvWriter, redis_url: str) -> None:
    port = free_port()
    broker = redis_url.replace("/0", "/7")
    env_file = write_env({"REDIS_URL": broker, "METRICS_PORT": str(port)})
    assert_worker_serves_metrics("embed_batch", QUEUES, env_file, port)
