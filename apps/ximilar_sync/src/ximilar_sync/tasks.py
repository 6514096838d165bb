"""Celery tasks of ximilar_sync.

Names are ``ximilar_sync.<task>``; the bodies come with issue 6 (catalog pipeline apps).
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="ximilar_sync.ximilar_sync")
def ximilar_sync() -> None:
    """Pending SKUs → Ximilar Collection."""
    raise NotImplementedError("ximilar_sync: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="ximilar_sync.ximilar_retry")
def ximilar_retry() -> None:
    """Retry SKUs whose sync failed."""
    raise NotImplementedError("ximilar_retry: implemented in issue 6 (catalog pipeline apps)")
