"""Queues, routes and beat schedule of scraper — spec 01 §18, times in ``CELERY_TIMEZONE`` (UTC).

| entry | when | queue |
|---|---|---|
| ``availability_poll`` | every hour at :00 | ``scraper`` |
| ``sync_to_production`` | every hour at :10 | ``scraper`` |
| ``cleanup_old_data`` | daily 04:00 | ``scraper`` |
"""

from __future__ import annotations

from typing import Final

from unde_common.worker import ScheduledTask

QUEUES: Final[tuple[str, ...]] = ("scraper",)
ROUTES: Final[dict[str, str]] = {
    "scraper.*": "scraper",
}
SCHEDULE: Final[tuple[ScheduledTask, ...]] = (
    ScheduledTask(
        "availability_poll", "scraper.availability_poll", minute="0", description="every hour at :00"
    ),
    ScheduledTask(
        "sync_to_production", "scraper.sync_to_production", minute="10", description="every hour at :10"
    ),
    ScheduledTask(
        "cleanup_old_data", "scraper.cleanup_old_data", minute="0", hour="4", description="daily 04:00"
    ),
)
