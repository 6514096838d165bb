"""Celery app of apify.

Broker ``REDIS_URL`` (Redis DB 7), queue(s) ``apify``, beat schedule
from :mod:`apify.schedule`.

    celery -A apify.celery_app worker -Q apify
    celery -A apify.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from celery import Celery

from apify import __version__, runtime
from apify.schedule import QUEUES, ROUTES, SCHEDULE
from apify.settings import ApifySettings
from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app


def make_celery(settings: ApifySettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given)."""
    settings = settings or ApifySettings.load()
    metrics = AppMetrics(settings.app_name, version=__version__)
    app = create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.redis_url,
        visibility_timeout_s=settings.celery_visibility_timeout_s,
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["apify.tasks"],
        metrics=metrics,
    )
    runtime.bind(app, runtime.Runtime(settings, metrics))
    return app


__getattr__ = lazy_celery_app(__name__, make_celery)
