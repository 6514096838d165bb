"""Queues, routes and beat schedule of scraper: spec 01 §18, times in ``CELERY_TIMEZONE``; this table
is the schedule's one owner (apps/README.md "Beat schedules").
"""

from __future__ import annotations

from unde_common.schedule import own_queue, schedule_table

QUEUES, ROUTES = own_queue("scraper")
SCHEDULE = schedule_table(
    "scraper",
    {
        "availability_poll": ("0", "*", "*", "every hour at :00"),
        "sync_to_production": ("10", "*", "*", "every hour at :10"),
        "cleanup_old_data": ("0", "4", "*", "daily 04:00"),
    },
)
