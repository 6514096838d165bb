"""Queues, routes and beat schedule of photo_downloader — spec 01 §18, times in ``CELERY_TIMEZONE`` (UTC).

| entry | when | queue |
|---|---|---|
| ``download_pending`` | every 15 minutes (:00, :15, :30, :45) | ``photo_downloader`` |
| ``download_retry`` | every hour at :30 | ``photo_downloader`` |
| ``cleanup_temp_files`` | daily 05:00 | ``photo_downloader`` |
"""

from __future__ import annotations

from typing import Final

from unde_common.worker import ScheduledTask

QUEUES: Final[tuple[str, ...]] = ("photo_downloader",)
ROUTES: Final[dict[str, str]] = {
    "photo_downloader.*": "photo_downloader",
}
SCHEDULE: Final[tuple[ScheduledTask, ...]] = (
    ScheduledTask(
        "download_pending",
        "photo_downloader.download_pending",
        minute="*/15",
        description="every 15 minutes (:00, :15, :30, :45)",
    ),
    ScheduledTask(
        "download_retry", "photo_downloader.download_retry", minute="30", description="every hour at :30"
    ),
    ScheduledTask(
        "cleanup_temp_files",
        "photo_downloader.cleanup_temp_files",
        minute="0",
        hour="5",
        description="daily 05:00",
    ),
)
