"""Queues, routes and beat schedule of collage: spec 01 §18, times in ``CELERY_TIMEZONE``; this table
is the schedule's one owner (apps/README.md "Beat schedules").
"""

from __future__ import annotations

from unde_common.schedule import own_queue, schedule_table

QUEUES, ROUTES = own_queue("collage")
SCHEDULE = schedule_table(
    "collage",
    {
        "process_collages": ("*/15", "*", "*", "every 15 minutes (:00, :15, :30, :45)"),
        "retry_failed": ("30", "*", "*", "every hour at :30"),
        "cleanup_temp_files": ("0", "5", "*", "daily 05:00"),
    },
)
