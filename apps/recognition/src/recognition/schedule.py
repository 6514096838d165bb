"""Queues, routes and beat schedule of recognition: spec 01 §18, times in ``CELERY_TIMEZONE``; this table
is the schedule's one owner (apps/README.md "Beat schedules").
"""

from __future__ import annotations

from typing import Final

from unde_common.worker import ScheduledTask

QUEUES: Final[tuple[str, ...]] = ("recognition_queue",)
ROUTES: Final[dict[str, str]] = {
    "recognition.*": "recognition_queue",
}
SCHEDULE: Final[tuple[ScheduledTask, ...]] = ()  # it serves requests from its queue
