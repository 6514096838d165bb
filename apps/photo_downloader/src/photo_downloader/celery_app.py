"""Celery app of photo_downloader: broker ``REDIS_URL`` (Redis DB 7), queue ``photo_downloader``,
beat table in :mod:`photo_downloader.schedule`
(``celery -A photo_downloader.celery_app worker -Q photo_downloader`` / ``beat``)."""

from __future__ import annotations

from photo_downloader import __version__, runtime, schedule
from photo_downloader.settings import PhotoDownloaderSettings
from unde_common.worker import celery_app_factory, lazy_celery_app

make_celery = celery_app_factory(
    "photo_downloader", PhotoDownloaderSettings.load, __version__, schedule, on_create=runtime.bind_new
)
__getattr__ = lazy_celery_app(__name__, make_celery)
