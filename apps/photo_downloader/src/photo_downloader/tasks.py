"""Celery tasks of photo_downloader.

Names are ``photo_downloader.<task>``; the bodies come with issue 6 (catalog pipeline apps).
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="photo_downloader.download_pending")
def download_pending() -> None:
    """Batch of pending products → originals/{brand}/{external_id}/{n}.jpg."""
    raise NotImplementedError("download_pending: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="photo_downloader.download_retry")
def download_retry() -> None:
    """Retry products whose download failed."""
    raise NotImplementedError("download_retry: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="photo_downloader.cleanup_temp_files")
def cleanup_temp_files() -> None:
    """Empty data_dir."""
    raise NotImplementedError("cleanup_temp_files: implemented in issue 6 (catalog pipeline apps)")
