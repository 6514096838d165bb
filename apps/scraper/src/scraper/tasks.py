"""Celery tasks of scraper.

Names are ``scraper.<task>``; the bodies come with issue 6 (catalog pipeline apps).
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="scraper.availability_poll")
def availability_poll() -> None:
    """Mobile API → staging raw_availability for every KZ store."""
    raise NotImplementedError("availability_poll: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="scraper.sync_to_production")
def sync_to_production() -> None:
    """Collage_ready products with fresh availability → production products."""
    raise NotImplementedError("sync_to_production: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="scraper.cleanup_old_data")
def cleanup_old_data() -> None:
    """DELETE staging rows older than cleanup_retention_days."""
    raise NotImplementedError("cleanup_old_data: implemented in issue 6 (catalog pipeline apps)")
