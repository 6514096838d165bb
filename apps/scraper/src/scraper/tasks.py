"""Celery tasks of scraper (spec 01 §18): ``availability_poll`` hourly :00,
``sync_to_production`` hourly :10, ``cleanup_old_data`` daily 04:00."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from scraper import availability, cleanup, runtime, sync


@shared_task(name="scraper.availability_poll", bind=True)
def availability_poll(self: Task[Any, Any]) -> dict[str, Any]:
    """Mobile API → staging raw_availability for every KZ store."""
    return availability.poll(runtime.for_app(self.app)).as_dict()


@shared_task(name="scraper.sync_to_production", bind=True)
def sync_to_production(self: Task[Any, Any]) -> dict[str, Any]:
    """Collage_ready products with fresh availability → production products."""
    return sync.run(runtime.for_app(self.app)).as_dict()


@shared_task(name="scraper.cleanup_old_data", bind=True)
def cleanup_old_data(self: Task[Any, Any]) -> dict[str, Any]:
    """DELETE staging rows older than cleanup_retention_days."""
    return cleanup.run(runtime.for_app(self.app))
