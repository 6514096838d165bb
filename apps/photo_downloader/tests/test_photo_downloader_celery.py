"""Celery wiring of photo_downloader: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A photo_downloader.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

import importlib
from typing import Final

import pytest
from celery import Celery

from photo_downloader.celery_app import make_celery
from photo_downloader.schedule import QUEUES
from photo_downloader.settings import PhotoDownloaderSettings
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
    "download_pending": (
        {0, 15, 30, 45},
        EVERY_HOUR,
        ANY_DAY,
        "photo_downloader",
    ),  # every 15 minutes (:00, :15, :30, :45)
    "download_retry": ({30}, EVERY_HOUR, ANY_DAY, "photo_downloader"),  # every hour at :30
    "cleanup_temp_files": ({0}, {5}, ANY_DAY, "photo_downloader"),  # daily 05:00
}
TASK_QUEUES: Final[dict[str, str]] = {
    "photo_downloader.download_pending": "photo_downloader",
    "photo_downloader.download_retry": "photo_downloader",
    "photo_downloader.cleanup_temp_files": "photo_downloader",
}


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(PhotoDownloaderSettings)


@pytest.fixture
def celery(write_env: EnvWriter) -> Celery:
    write_env()
    app = make_celery(PhotoDownloaderSettings.load())
    importlib.import_module("photo_downloader.tasks")  # registers the shared tasks
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
    assert_lazy_celery_module("photo_downloader.celery_app", "photo_downloader")


def test_worker_command_starts_and_serves_metrics(write_env: EnvWriter, redis_url: str) -> None:
    port = free_port()
    broker = redis_url.replace("/0", "/7")
    env_file = write_env({"REDIS_URL": broker, "METRICS_PORT": str(port)})
    assert_worker_serves_metrics("photo_downloader", QUEUES, env_file, port)
