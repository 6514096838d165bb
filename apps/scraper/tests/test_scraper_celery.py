"""Celery wiring of scraper: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A scraper.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

import importlib
from typing import Final

import pytest
from celery import Celery

from scraper.celery_app import make_celery
from scraper.schedule import QUEUES
from scraper.settings import ScraperSettings
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

EVERY_HOUR: Final = set(range(24))
ANY_DAY: Final = set(range(7))
#: entry → (minute, hour, day_of_week, queue), as spec 01 §18 says
EXPECTED: Final[dict[str, CronSpec]] = {
    "availability_poll": ({0}, EVERY_HOUR, ANY_DAY, "scraper"),  # every hour at :00
    "sync_to_production": ({10}, EVERY_HOUR, ANY_DAY, "scraper"),  # every hour at :10
    "cleanup_old_data": ({0}, {4}, ANY_DAY, "scraper"),  # daily 04:00
}
TASK_QUEUES: Final[dict[str, str]] = {
    "scraper.availability_poll": "scraper",
    "scraper.sync_to_production": "scraper",
    "scraper.cleanup_old_data": "scraper",
}


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(ScraperSettings)


@pytest.fixture
def celery(write_env: EnvWriter) -> Celery:
    write_env()
    app = make_celery(ScraperSettings.load())
    importlib.import_module("scraper.tasks")  # registers the shared tasks
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
    assert_lazy_celery_module("scraper.celery_app", "scraper")


def test_worker_command_starts_and_serves_metrics(write_env: EnvWriter, redis_url: str) -> None:
    port = free_port()
    broker = redis_url.replace("/0", "/7")
    env_file = write_env({"REDIS_URL": broker, "METRICS_PORT": str(port)})
    assert_worker_serves_metrics("scraper", QUEUES, env_file, port)
