"""Queues, routes and beat schedule of apify — spec 01 §18, times in ``CELERY_TIMEZONE`` (UTC).

| entry | when | queue |
|---|---|---|
| ``apify_zara`` | Sunday 02:00 | ``apify`` |
| ``apify_bershka`` | Sunday 03:00 | ``apify`` |
| ``apify_pullandbear`` | Sunday 04:00 | ``apify`` |
| ``apify_stradivarius`` | Sunday 05:00 | ``apify`` |
| ``apify_massimodutti`` | Sunday 06:00 | ``apify`` |
| ``apify_oysho`` | Sunday 07:00 | ``apify`` |
"""

from __future__ import annotations

from typing import Final

from unde_common.worker import ScheduledTask

QUEUES: Final[tuple[str, ...]] = ("apify",)
ROUTES: Final[dict[str, str]] = {
    "apify.*": "apify",
}
SCHEDULE: Final[tuple[ScheduledTask, ...]] = (
    ScheduledTask(
        "apify_zara", "apify.apify_zara", minute="0", hour="2", day_of_week="sun", description="Sunday 02:00"
    ),
    ScheduledTask(
        "apify_bershka",
        "apify.apify_bershka",
        minute="0",
        hour="3",
        day_of_week="sun",
        description="Sunday 03:00",
    ),
    ScheduledTask(
        "apify_pullandbear",
        "apify.apify_pullandbear",
        minute="0",
        hour="4",
        day_of_week="sun",
        description="Sunday 04:00",
    ),
    ScheduledTask(
        "apify_stradivarius",
        "apify.apify_stradivarius",
        minute="0",
        hour="5",
        day_of_week="sun",
        description="Sunday 05:00",
    ),
    ScheduledTask(
        "apify_massimodutti",
        "apify.apify_massimodutti",
        minute="0",
        hour="6",
        day_of_week="sun",
        description="Sunday 06:00",
    ),
    ScheduledTask(
        "apify_oysho",
        "apify.apify_oysho",
        minute="0",
        hour="7",
        day_of_week="sun",
        description="Sunday 07:00",
    ),
)
