"""Celery app of scraper: broker ``REDIS_URL`` (Redis DB 7), queue ``scraper``, beat table in
:mod:`scraper.schedule` (``celery -A scraper.celery_app worker -Q scraper`` / ``beat``)."""

from __future__ import annotations

from scraper import __version__, runtime, schedule
from scraper.settings import ScraperSettings
from unde_common.worker import celery_app_factory, lazy_celery_app

make_celery = celery_app_factory(
    "scraper", ScraperSettings.load, __version__, schedule, on_create=runtime.bind_new
)
__getattr__ = lazy_celery_app(__name__, make_celery)
