"""Celery app of collage: broker ``REDIS_URL`` (Redis DB 8), queue ``collage``, beat table in
:mod:`collage.schedule` (``celery -A collage.celery_app worker -Q collage`` / ``beat``)."""

from __future__ import annotations

from collage import __version__, runtime, schedule
from collage.settings import CollageSettings
from unde_common.worker import celery_app_factory, lazy_celery_app

make_celery = celery_app_factory(
    "collage", CollageSettings.load, __version__, schedule, on_create=runtime.bind_new
)
__getattr__ = lazy_celery_app(__name__, make_celery)
