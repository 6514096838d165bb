"""Queues, routes and beat schedule of ximilar_sync — spec 01 §18, times in ``CELERY_TIMEZONE`` (UTC).

| entry | when | queue |
|---|---|---|
| ``ximilar_sync`` | Sunday 10:00 | ``ximilar_sync`` |
| ``ximilar_retry`` | daily 12:00 | ``ximilar_sync`` |
"""

from __future__ import annotations

from typing import Final

from unde_common.worker import ScheduledTask

QUEUES: Final[tuple[str, ...]] = ("ximilar_sync",)
ROUTES: Final[dict[str, str]] = {
    "ximilar_sync.*": "ximilar_sync",
}
SCHEDULE: Final[tuple[ScheduledTask, ...]] = (
    ScheduledTask(
        "ximilar_sync",
        "ximilar_sync.ximilar_sync",
        minute="0",
        hour="10",
        day_of_week="sun",
        description="Sunday 10:00",
    ),
    ScheduledTask(
        "ximilar_retry", "ximilar_sync.ximilar_retry", minute="0", hour="12", description="daily 12:00"
    ),
)
