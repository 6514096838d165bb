"""Celery app of ximilar_sync.

Broker ``REDIS_URL`` (Redis DB 7), queue(s) ``ximilar_sync``, beat schedule
from :mod:`ximilar_sync.schedule`.

    celery -A ximilar_sync.celery_app worker -Q ximilar_sync
    celery -A ximilar_sync.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from celery import Celery

from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app
from ximilar_sync import __version__, runtime
from ximilar_sync.schedule import QUEUES, ROUTES, SCHEDULE
from ximilar_sync.settings import XimilarSyncSettings


def make_celery(settings: XimilarSyncSettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given)."""
    settings = settings or XimilarSyncSettings.load()
    metrics = AppMetrics(settings.app_name, version=__version__)
    app = create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.redis_url,
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["ximilar_sync.tasks"],
        metrics=metrics,
    )
    runtime.bind(app, runtime.Runtime(settings, metrics))
    return app


__getattr__ = lazy_celery_app(__name__, make_celery)
