"""Queues, routes and beat schedule of embed_batch — spec 01 §18, times in ``CELERY_TIMEZONE`` (UTC).

| entry | when | queue |
|---|---|---|
| ``embedding_batch_sync`` | Monday 02:00 | ``embed_batch`` |
| ``embedding_progressive`` | Wednesday 03:00 | ``embed_batch`` |
"""

from __future__ import annotations

from typing import Final

from unde_common.worker import ScheduledTask

QUEUES: Final[tuple[str, ...]] = ("embed_batch",)
ROUTES: Final[dict[str, str]] = {
    "embed_batch.*": "embed_batch",
}
SCHEDULE: Final[tuple[ScheduledTask, ...]] = (
    ScheduledTask(
        "embedding_batch_sync",
        "embed_batch.embedding_batch_sync",
        minute="0",
        hour="2",
        day_of_week="mon",
        description="Monday 02:00",
    ),
    ScheduledTask(
        "embedding_progressive",
        "embed_batch.embedding_progressive",
        minute="0",
        hour="3",
        day_of_week="wed",
        description="Wednesday 03:00",
    ),
)
