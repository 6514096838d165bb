"""Celery app of ximilar_sync: broker ``REDIS_URL`` (Redis DB 7), queue ``ximilar_sync``, beat table in
:mod:`ximilar_sync.schedule` (``celery -A ximilar_sync.celery_app worker -Q ximilar_sync`` / ``beat``)."""

from __future__ import annotations

from unde_common.worker import celery_app_factory, lazy_celery_app
from ximilar_sync import __version__, runtime, schedule
from ximilar_sync.settings import XimilarSyncSettings

make_celery = celery_app_factory(
    "ximilar_sync", XimilarSyncSettings.load, __version__, schedule, on_create=runtime.bind_new
)
__getattr__ = lazy_celery_app(__name__, make_celery)
