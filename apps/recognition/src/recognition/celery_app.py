"""Celery app of recognition.

Broker ``CELERY_BROKER_URL`` (Redis DB 6), queue(s) ``recognition_queue``, beat schedule
from :mod:`recognition.schedule`.

    celery -A recognition.celery_app worker -Q recognition_queue
    celery -A recognition.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from celery import Celery

from recognition import __version__
from recognition.schedule import QUEUES, ROUTES, SCHEDULE
from recognition.settings import RecognitionSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app


def make_celery(settings: RecognitionSettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given)."""
    settings = settings or RecognitionSettings.load()
    return create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.celery_broker_url,
        result_backend=settings.celery_result_backend,
        task_time_limit_s=settings.task_time_limit_s,
        task_soft_time_limit_s=settings.task_soft_time_limit_s,
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["recognition.tasks"],
        metrics=AppMetrics(settings.app_name, version=__version__),
    )


__getattr__ = lazy_celery_app(__name__, make_celery)
