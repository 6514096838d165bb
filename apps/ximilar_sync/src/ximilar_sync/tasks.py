"""Celery tasks of ximilar_sync (spec 01 §18): ``ximilar_sync`` Sunday 10:00, ``ximilar_retry``
daily 12:00."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from ximilar_sync import runtime, sync


@shared_task(name="ximilar_sync.ximilar_sync", bind=True)
def ximilar_sync(self: Task[Any, Any]) -> dict[str, Any]:
    """Pending SKUs → Ximilar Collection."""
    return sync.run(runtime.for_app(self.app)).as_dict()


@shared_task(name="ximilar_sync.ximilar_retry", bind=True)
def ximilar_retry(self: Task[Any, Any]) -> dict[str, Any]:
    """Retry SKUs whose sync failed (fewer than max_ximilar_attempts failures)."""
    return sync.run(runtime.for_app(self.app), retry=True).as_dict()
