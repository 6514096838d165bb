"""Celery wiring of recognition: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A recognition.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

import importlib
from typing import Final

import pytest
from celery import Celery

from recognition.celery_app import make_celery
from recognition.schedule import QUEUES
from recognition.settings import RecognitionSettings
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

#: spec 01 §18: no schedule, it serves requests from its queue
EXPECTED: Final[dict[str, CronSpec]] = {}
TASK_QUEUES: Final[dict[str, str]] = {
    "recognition.recognize_photo": "recognition_queue",
}


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(RecognitionSettings)


@pytest.fixture
def celery(write_env: EnvWriter) -> Celery:
    write_env()
    app = make_celery(RecognitionSettings.load())
    importlib.import_module("recognition.tasks")  # registers the shared tasks
    return app


def test_beat_schedule_is_spec_01_section_18(celery: Celery) -> None:
    assert_beat_schedule(celery, EXPECTED)


def test_tasks_route_to_their_queues(celery: Celery) -> None:
    assert_task_routes(celery, QUEUES, TASK_QUEUES)


def test_broker_comes_from_settings(celery: Celery) -> None:
    assert redis_db(celery.conf.broker_url) == 6
    assert redis_db(celery.conf.result_backend) == 6
    assert (celery.conf.task_time_limit, celery.conf.task_soft_time_limit) == (30, 25)


def test_module_attribute_app_is_built_lazily(write_env: EnvWriter) -> None:
    write_env()
    assert_lazy_celery_module("recognition.celery_app", "recognition")


def test_worker_command_starts_and_serves_metrics(write_env: EnvWriter, redis_url: str) -> None:
    port = free_port()
    broker = redis_url.replace("/0", "/6")
    env_file = write_env(
        {"CELERY_BROKER_URL": broker, "CELERY_RESULT_BACKEND": broker, "METRICS_PORT": str(port)}
    )
    assert_worker_serves_metrics("recognition", QUEUES, env_file, port)
