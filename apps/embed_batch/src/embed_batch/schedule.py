"""Queues, routes and beat schedule of embed_batch: spec 01 §18, times in ``CELERY_TIMEZONE``; this table
is the schedule's one owner (apps/README.md "Beat schedules").
"""

from __future__ import annotations

from unde_common.schedule import own_queue, schedule_table

QUEUES, ROUTES = own_queue("embed_batch")
SCHEDULE = schedule_table(
    "embed_batch",
    {
        "embedding_batch_sync": ("0", "2", "mon", "Monday 02:00"),
        "embedding_progressive": ("0", "3", "wed", "Wednesday 03:00"),
    },
)
