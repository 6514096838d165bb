"""Celery app of embed_batch.

Broker ``REDIS_URL`` (Redis DB 7), queue(s) ``embed_batch``, beat schedule
from :mod:`embed_batch.schedule`.

    celery -A embed_batch.celery_app worker -Q embed_batch
    celery -A embed_batch.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from celery import Celery

from embed_batch import __version__
from embed_batch.schedule import QUEUES, ROUTES, SCHEDULE
from embed_batch.settings import EmbedBatchSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app


def make_celery(settings: EmbedBatchSettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given)."""
    settings = settings or EmbedBatchSettings.load()
    return create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.redis_url,
        visibility_timeout_s=settings.celery_visibility_timeout_s,
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["embed_batch.tasks"],
        metrics=AppMetrics(settings.app_name, version=__version__),
    )


__getattr__ = lazy_celery_app(__name__, make_celery)
