"""Celery app of collage.

Broker ``REDIS_URL`` (Redis DB 8), queue(s) ``collage``, beat schedule
from :mod:`collage.schedule`.

    celery -A collage.celery_app worker -Q collage
    celery -A collage.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from celery import Celery

from collage import __version__, runtime
from collage.schedule import QUEUES, ROUTES, SCHEDULE
from collage.settings import CollageSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app


def make_celery(settings: CollageSettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given)."""
    settings = settings or CollageSettings.load()
    metrics = AppMetrics(settings.app_name, version=__version__)
    app = create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.redis_url,
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["collage.tasks"],
        metrics=metrics,
    )
    runtime.bind(app, runtime.Runtime(settings, metrics))
    return app


__getattr__ = lazy_celery_app(__name__, make_celery)
