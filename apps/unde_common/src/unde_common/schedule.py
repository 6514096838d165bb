"""Beat schedule tables of the Celery apps (spec 01 §18).

An app's ``schedule.py`` owns its schedule (apps/README.md "Beat schedules"): one row per entry,
entry name → ``(minute, hour, day_of_week, description)`` in crontab terms, times in
``CELERY_TIMEZONE``. The entry runs the task ``<app>.<entry>``; :func:`unde_common.worker.beat_schedule`
turns the rows into Celery's ``beat_schedule``.
"""

from __future__ import annotations

from collections.abc import Mapping

from unde_common.worker import ScheduledTask

__all__ = ["CronRow", "own_queue", "schedule_table"]

#: (minute, hour, day_of_week, description)
CronRow = tuple[str, str, str, str]


def own_queue(app: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """``(QUEUES, ROUTES)`` of an app whose tasks all go to one queue named after it."""
    return (app,), {f"{app}.*": app}


def schedule_table(
    app: str, rows: Mapping[str, CronRow], *, queue: str | None = None
) -> tuple[ScheduledTask, ...]:
    """The :class:`ScheduledTask` rows of ``app``: each entry runs task ``<app>.<entry>`` on ``queue``
    (None: the app's default queue)."""
    return tuple(
        ScheduledTask(
            name,
            f"{app}.{name}",
            minute=minute,
            hour=hour,
            day_of_week=day_of_week,
            queue=queue,
            description=what,
        )
        for name, (minute, hour, day_of_week, what) in rows.items()
    )
