"""Celery wiring of apify: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A apify.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

import importlib
from typing import Final

import pytest
from celery import Celery

from apify.celery_app import make_celery
from apify.schedule import QUEUES
from apify.settings import ApifySettings
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
    "apify_zara": ({0}, {2}, {0}, "apify"),  # Sunday 02:00
    "apify_bershka": ({0}, {3}, {0}, "apify"),  # Sunday 03:00
    "apify_pullandbear": ({0}, {4}, {0}, "apify"),  # Sunday 04:00
    "apify_stradivarius": ({0}, {5}, {0}, "apify"),  # Sunday 05:00
    "apify_massimodutti": ({0}, {6}, {0}, "apify"),  # Sunday 06:00
    "apify_oysho": ({0}, {7}, {0}, "apify"),  # Sunday 07:00
}
TASK_QUEUES: Final[dict[str, str]] = {
    "apify.apify_zara": "apify",
    "apify.apify_bershka": "apify",
    "apify.apify_pullandbear": "apify",
    "apify.apify_stradivarius": "apify",
    "apify.apify_massimodutti": "apify",
    "apify.apify_oysho": "apify",
}


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(ApifySettings)


@pytest.fixture
def celery(write_env: EnvWriter) -> Celery:
    write_env()
    app = make_celery(ApifySettings.load())
    importlib.import_module("apify.tasks")  # registers the shared tasks
    return app


def test_beat_schedule_is_spec_01_section_18(celery: Celery) -> None:
    assert_beat_schedule(celery, EXPECTED)


def test_tasks_route_to_their_queues(celery: Celery) -> None:
    assert_task_routes(celery, QUEUES, TASK_QUEUES)


def test_broker_comes_from_settings(celery: Celery) -> None:
    assert redis_db(celery.conf.broker_url) == 7
    assert celery.conf.task_ignore_result
    assert celery.conf.broker_transport_options == {"visibility_timeout": 21600}


def test_module_attribute_app_is_built_lazily(write_env: EnvWriter) -> None:
    write_env()
    assert_lazy_celery_module("apify.celery_app", "apify")


def test_worker_command_starts_and_serves_metrics(write_env: EnvWriter, redis_url: str) -> None:
    port = free_port()
    broker = redis_url.replace("/0", "/7")
    env_file = write_env({"REDIS_URL": broker, "METRICS_PORT": str(port)})
    assert_worker_serves_metrics("apify", QUEUES, env_file, port)
