"""Celery app of apify: broker ``REDIS_URL`` (Redis DB 7), queue ``apify``, beat table in
:mod:`apify.schedule` (``celery -A apify.celery_app worker -Q apify`` / ``beat``)."""

from __future__ import annotations

from apify import __version__, runtime, schedule
from apify.settings import ApifySettings
from unde_common.worker import celery_app_factory, lazy_celery_app

make_celery = celery_app_factory(
    "apify",
    ApifySettings.load,
    __version__,
    schedule,
    on_create=runtime.bind_new,
    options=lambda s: {"broker_url": s.redis_url, "visibility_timeout_s": s.celery_visibility_timeout_s},
)
__getattr__ = lazy_celery_app(__name__, make_celery)
