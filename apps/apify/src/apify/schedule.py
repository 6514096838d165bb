"""Queues, routes and beat schedule of apify: spec 01 §18, times in ``CELERY_TIMEZONE``; this table
is the schedule's one owner (apps/README.md "Beat schedules").
"""

from __future__ import annotations

from unde_common.schedule import own_queue, schedule_table

QUEUES, ROUTES = own_queue("apify")
SCHEDULE = schedule_table(
    "apify",
    {
        "apify_zara": ("0", "2", "sun", "Sunday 02:00"),
        "apify_bershka": ("0", "3", "sun", "Sunday 03:00"),
        "apify_pullandbear": ("0", "4", "sun", "Sunday 04:00"),
        "apify_stradivarius": ("0", "5", "sun", "Sunday 05:00"),
        "apify_massimodutti": ("0", "6", "sun", "Sunday 06:00"),
        "apify_oysho": ("0", "7", "sun", "Sunday 07:00"),
    },
)
