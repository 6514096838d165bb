"""Celery tasks of collage (spec 01 §18): ``process_collages`` every 15 min, ``retry_failed``
hourly at :30, ``cleanup_temp_files`` daily 05:00."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from collage import builder, runtime


@shared_task(name="collage.process_collages", bind=True)
def process_collages(self: Task[Any, Any]) -> dict[str, Any]:
    """Uploaded products → collages/{brand}/{external_id}.jpg."""
    return builder.run(runtime.for_app(self.app)).as_dict()


@shared_task(name="collage.retry_failed", bind=True)
def retry_failed(self: Task[Any, Any]) -> dict[str, Any]:
    """Retry products whose collage failed (fewer than max_collage_attempts failures)."""
    return builder.run(runtime.for_app(self.app), retry=True).as_dict()


@shared_task(name="collage.cleanup_temp_files", bind=True)
def cleanup_temp_files(self: Task[Any, Any]) -> dict[str, Any]:
    """Empty data_dir."""
    return {"removed": builder.cleanup_temp_files(runtime.for_app(self.app))}
