"""Celery wiring of ximilar_sync: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A ximilar_sync.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

import importlib
from typing import Final

import pytest
from celery import Celery

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
from ximilar_sync.celery_app import make_celery
from ximilar_sync.schedule import QUEUES
from ximilar_sync.settings import XimilarSyncSettings

ANY_DAY: Final = set(range(7))
#: entry → (minute, hour, day_of_week, queue), as spec 01 §18 says
EXPECTED: Final[dict[str, CronSpec]] = {
    "ximilar_sync": ({0}, {10}, {0}, "ximilar_sync"),  # Sunday 10:00
    "ximilar_retry": ({0}, {12}, ANY_DAY, "ximilar_sync"),  # daily 12:00
}
TASK_QUEUES: Final[dict[str, str]] = {
    "ximilar_sync.ximilar_sync": "ximilar_sync",
    "ximilar_sync.ximilar_retry": "ximilar_sync",
}


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(XimilarSyncSettings)


@pytest.fixture
def celery(write_env: EnvWriter) -> Celery:
    write_env()
    app = make_celery(XimilarSyncSettings.load())
    importlib.import_module("ximilar_sync.tasks")  # registers the shared tasks
    return app


def test_beat_schedule_is_spec_01_section_18(celery: Celery) -> None:
    assert_beat_schedule(celery, EXPECTED)


def test_tasks_route_to_their_queues(celery: Celery) -> None:
    assert_task_routes(celery, QUEUES, TASK_QUEUES)


def test_broker_comes_from_settings(celery: Celery) -> None:
    assert redis_db(celery.conf.broker_url) == 7
    assert celery.conf.task_ignore_result


def test_module_attribute_app_is_built_lazily(write_env: EnvWriter) -> None:
    write_env()
    assert_lazy_celery_module("ximilar_sync.celery_app", "ximilar_sync")


def test_worker_command_starts_and_serves_metrics(write_env: EnvWriter, redis_url: str) -> None:
    port = free_port()
    broker = redis_url.replace("/0", "/7")
    env_file = write_env({"REDIS_URL": broker, "METRICS_PORT": str(port)})
    assert_worker_serves_metrics("ximilar_sync", QUEUES, env_file, port)
