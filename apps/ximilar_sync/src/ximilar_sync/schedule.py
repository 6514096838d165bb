"""Queues, routes and beat schedule of ximilar_sync: spec 01 §18, times in ``CELERY_TIMEZONE``; this table
is the schedule's one owner (apps/README.md "Beat schedules").
"""

from __future__ import annotations

from unde_common.schedule import own_queue, schedule_table

QUEUES, ROUTES = own_queue("ximilar_sync")
SCHEDULE = schedule_table(
    "ximilar_sync",
    {
        "ximilar_sync": ("0", "10", "sun", "Sunday 10:00"),
        "ximilar_retry": ("0", "12", "*", "daily 12:00"),
    },
)
