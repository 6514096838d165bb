"""Celery app of photo_downloader.

Broker ``REDIS_URL`` (Redis DB 7), queue(s) ``photo_downloader``, beat schedule
from :mod:`photo_downloader.schedule`.

    celery -A photo_downloader.celery_app worker -Q photo_downloader
    celery -A photo_downloader.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from celery import Celery

from photo_downloader import __version__, runtime
from photo_downloader.schedule import QUEUES, ROUTES, SCHEDULE
from photo_downloader.settings import PhotoDownloaderSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app


def make_celery(settings: PhotoDownloaderSettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given)."""
    settings = settings or PhotoDownloaderSettings.load()
    metrics = AppMetrics(settings.app_name, version=__version__)
    app = create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.redis_url,
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["photo_downloader.tasks"],
        metrics=metrics,
    )
    runtime.bind(app, runtime.Runtime(settings, metrics))
    return app


__getattr__ = lazy_celery_app(__name__, make_celery)
