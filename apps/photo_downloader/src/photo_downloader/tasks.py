"""Celery tasks of photo_downloader (spec 01 §18): ``download_pending`` every 15 min,
``download_retry`` hourly at :30, ``cleanup_temp_files`` daily 05:00."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from photo_downloader import downloader, runtime


@shared_task(name="photo_downloader.download_pending", bind=True)
def download_pending(self: Task[Any, Any]) -> dict[str, Any]:
    """Batch of pending products → originals/{brand}/{external_id}/{n}.jpg."""
    return downloader.run(runtime.for_app(self.app)).as_dict()


@shared_task(name="photo_downloader.download_retry", bind=True)
def download_retry(self: Task[Any, Any]) -> dict[str, Any]:
    """Retry products whose download failed (fewer than max_download_attempts failures)."""
    return downloader.run(runtime.for_app(self.app), retry=True).as_dict()


@shared_task(name="photo_downloader.cleanup_temp_files", bind=True)
def cleanup_temp_files(self: Task[Any, Any]) -> dict[str, Any]:
    """Empty data_dir."""
    return {"removed": downloader.cleanup_temp_files(runtime.for_app(self.app))}
