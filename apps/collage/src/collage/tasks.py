"""Celery tasks of collage.

Names are ``collage.<task>``; the bodies come with issue 6 (catalog pipeline apps).
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="collage.process_collages")
def process_collages() -> None:
    """Uploaded products → collages/{brand}/{external_id}.jpg."""
    raise NotImplementedError("process_collages: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="collage.retry_failed")
def retry_failed() -> None:
    """Retry products whose collage failed."""
    raise NotImplementedError("retry_failed: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="collage.cleanup_temp_files")
def cleanup_temp_files() -> None:
    """Empty data_dir."""
    raise NotImplementedError("cleanup_temp_files: implemented in issue 6 (catalog pipeline apps)")
