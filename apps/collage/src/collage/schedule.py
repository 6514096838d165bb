"""Queues, routes and beat schedule of collage — spec 01 §18, times in ``CELERY_TIMEZONE`` (UTC).

| entry | when | queue |
|---|---|---|
| ``process_collages`` | every 15 minutes (:00, :15, :30, :45) | ``collage`` |
| ``retry_failed`` | every hour at :30 | ``collage`` |
| ``cleanup_temp_files`` | daily 05:00 | ``collage`` |
"""

from __future__ import annotations

from typing import Final

from unde_common.worker import ScheduledTask

QUEUES: Final[tuple[str, ...]] = ("collage",)
ROUTES: Final[dict[str, str]] = {
    "collage.*": "collage",
}
SCHEDULE: Final[tuple[ScheduledTask, ...]] = (
    ScheduledTask(
        "process_collages",
        "collage.process_collages",
        minute="*/15",
        description="every 15 minutes (:00, :15, :30, :45)",
    ),
    ScheduledTask("retry_failed", "collage.retry_failed", minute="30", description="every hour at :30"),
    ScheduledTask(
        "cleanup_temp_files", "collage.cleanup_temp_files", minute="0", hour="5", description="daily 05:00"
    ),
)
