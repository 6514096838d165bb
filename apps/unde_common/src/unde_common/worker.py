"""Celery wiring shared by the worker apps.

Each Celery app keeps its schedule as a table of :class:`ScheduledTask` rows (spec 01 §18) in its
``schedule.py`` and builds the Celery app with :func:`create_celery_app`, which sets:

- the broker/result backend from settings, JSON only, UTC-based timezone from settings;
- the app's queues, ``task_default_queue`` (never Celery's shared ``celery`` queue, since several
  apps share one Redis DB) and ``task_routes``;
- ``beat_schedule`` built from the table (each entry routed to its queue);
- reliability defaults for long batch tasks: ``acks_late`` + ``reject_on_worker_lost``,
  prefetch 1, a Redis ``visibility_timeout`` longer than the longest task;
- logging through :func:`unde_common.logging.configure_logging` (Celery does not hijack it);
- Prometheus: ``<prefix>_celery_tasks_total{task,state}`` and
  ``<prefix>_celery_task_duration_seconds{task}``, served by the worker's main process on
  ``settings.metrics_host:metrics_port`` or, when ``settings.metrics_textfile`` is set, written there
  every ``metrics_textfile_interval_s`` for node_exporter's textfile collector (multiprocess
  aggregation when ``PROMETHEUS_MULTIPROC_DIR`` is set).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task, signals
from celery.schedules import crontab
from kombu import Queue
from pydantic import SecretStr

from unde_common.logging import configure_logging
from unde_common.metrics import AppMetrics
from unde_common.settings import CeleryWorkerSettings

__all__ = [
    "CRONTAB_FIELDS",
    "ScheduledTask",
    "beat_schedule",
    "create_celery_app",
    "crontab_fields",
    "lazy_celery_app",
]

log = logging.getLogger(__name__)

CRONTAB_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")


def crontab_fields(cron: crontab) -> dict[str, set[int]]:
    """The expanded sets of a crontab (``*/15`` → {0, 15, 30, 45}; Sunday = 0), by field name."""
    return {name: set(getattr(cron, name)) for name in CRONTAB_FIELDS}


@dataclass(frozen=True, slots=True)
class ScheduledTask:
    """One row of an app's schedule table, in crontab terms."""

    name: str
    task: str
    minute: str = "0"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    queue: str | None = None
    description: str = ""

    def crontab(self) -> crontab:
        return crontab(
            minute=self.minute,
            hour=self.hour,
            day_of_week=self.day_of_week,
            day_of_month=self.day_of_month,
            month_of_year=self.month_of_year,
        )


def beat_schedule(entries: Sequence[ScheduledTask], default_queue: str) -> dict[str, dict[str, Any]]:
    """Celery ``beat_schedule`` from a schedule table; names must be unique."""
    schedule: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.name in schedule:
            raise ValueError(f"duplicate schedule entry {entry.name!r}")
        schedule[entry.name] = {
            "task": entry.task,
            "schedule": entry.crontab(),
            "options": {"queue": entry.queue or default_queue},
        }
    return schedule


def _raw(url: SecretStr | str | None) -> str | None:
    if url is None:
        return None
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def create_celery_app(
    name: str,
    settings: CeleryWorkerSettings,
    *,
    broker_url: SecretStr | str,
    queues: Sequence[str],
    result_backend: SecretStr | str | None = None,
    routes: Mapping[str, str] | None = None,
    schedule: Sequence[ScheduledTask] = (),
    include: Sequence[str] = (),
    metrics: AppMetrics | None = None,
    visibility_timeout_s: int = 3600,
    task_time_limit_s: int | None = None,
    task_soft_time_limit_s: int | None = None,
    annotations: Mapping[str, Mapping[str, Any]] | None = None,
) -> Celery:
    """A configured Celery app. ``queues[0]`` is the default queue; ``routes`` maps task names
    (or ``fnmatch`` globs) to queues; ``schedule`` becomes ``beat_schedule``; the time limits apply
    to every task, ``annotations`` (task name → options such as ``time_limit``) to single ones."""
    if not queues:
        raise ValueError("a Celery app needs at least one queue")
    default_queue = queues[0]
    unknown = {q for q in (routes or {}).values() if q not in queues}
    unknown |= {e.queue for e in schedule if e.queue is not None and e.queue not in queues}
    if unknown:
        raise ValueError(f"routes/schedule name queues the app does not declare: {sorted(unknown)}")

    app = Celery(name, include=list(include))
    app.conf.update(
        broker_url=_raw(broker_url),
        result_backend=_raw(result_backend),
        task_ignore_result=result_backend is None,
        result_expires=3600,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone=settings.celery_timezone,
        enable_utc=True,
        task_queues=[Queue(q, routing_key=q) for q in queues],
        task_default_queue=default_queue,
        task_default_routing_key=default_queue,
        task_create_missing_queues=False,
        task_routes={pattern: {"queue": q} for pattern, q in (routes or {}).items()},
        beat_schedule=beat_schedule(schedule, default_queue),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        task_time_limit=task_time_limit_s,
        task_soft_time_limit=task_soft_time_limit_s,
        task_annotations={name: dict(opts) for name, opts in (annotations or {}).items()} or None,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.celery_concurrency,
        worker_max_tasks_per_child=settings.celery_max_tasks_per_child,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": visibility_timeout_s},
    )
    app_metrics = metrics or AppMetrics(settings.app_name)
    _wire_signals(app, settings, app_metrics)
    return app


def lazy_celery_app(module_name: str, factory: Callable[[], Celery]) -> Callable[[str], Celery]:
    """A module ``__getattr__`` (PEP 562) that builds the Celery app on first access of ``app`` (or
    ``celery``), which is what ``celery -A <module>`` looks up: importing the module reads no
    settings, so tests can import it and build the app from their own settings.

        __getattr__ = lazy_celery_app(__name__, make_celery)
    """
    built: list[Celery] = []

    def module_getattr(attr: str) -> Celery:
        if attr not in ("app", "celery"):
            raise AttributeError(f"module {module_name!r} has no attribute {attr!r}")
        if not built:
            built.append(factory())
        return built[0]

    return module_getattr


def _wire_signals(app: Celery, settings: CeleryWorkerSettings, metrics: AppMetrics) -> None:
    """Logging and metrics hooks. Signals are process-global, so each handler checks its app."""
    tasks_total = metrics.counter(
        "celery_tasks", "Celery tasks finished, by task and state.", ["task", "state"]
    )
    duration = metrics.histogram(
        "celery_task_duration_seconds",
        "Celery task run time in seconds.",
        ["task"],
        buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600),
    )
    started: dict[str, float] = {}
    uid = f"unde:{app.main}:{id(app)}"

    def own(task: Task[Any, Any] | None) -> bool:
        return task is not None and task.app is app

    def on_setup_logging(**_: Any) -> None:
        configure_logging(settings.app_name, settings.log_level)

    def on_prerun(task_id: str | None = None, task: Task[Any, Any] | None = None, **_: Any) -> None:
        if own(task) and task_id:
            started[task_id] = time.perf_counter()

    def on_postrun(
        task_id: str | None = None, task: Task[Any, Any] | None = None, state: str | None = None, **_: Any
    ) -> None:
        if not own(task) or task is None:
            return
        tasks_total.labels(task.name, state or "UNKNOWN").inc()
        begin = started.pop(task_id or "", None)
        if begin is not None:
            duration.labels(task.name).observe(time.perf_counter() - begin)

    def on_worker_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app or not settings.metrics_enabled:
            return
        if settings.metrics_textfile is not None:
            metrics.start_textfile_writer(settings.metrics_textfile, settings.metrics_textfile_interval_s)
            log.info(
                "metrics textfile writer started", extra={"metrics_textfile": str(settings.metrics_textfile)}
            )
            return
        metrics.start_http_server(settings.metrics_port, settings.metrics_host)
        log.info(
            "metrics server started",
            extra={"metrics_host": settings.metrics_host, "metrics_port": settings.metrics_port},
        )

    def on_child_shutdown(pid: int | None = None, **_: Any) -> None:
        metrics.mark_process_dead(pid or os.getpid())

    signals.setup_logging.connect(on_setup_logging, weak=False, dispatch_uid=f"{uid}:logging")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid=f"{uid}:prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid=f"{uid}:postrun")
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid=f"{uid}:ready")
    signals.worker_process_shutdown.connect(on_child_shutdown, weak=False, dispatch_uid=f"{uid}:child")
