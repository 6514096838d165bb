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
  ``settings.metrics_host:metrics_port`` to the monitoring caller only
  (:func:`unde_common.auth.start_metrics_server`, ``SERVICE_MONITORING_SHA256``) or, when
  ``settings.metrics_textfile`` is set, written there
  every ``metrics_textfile_interval_s`` for node_exporter's textfile collector (multiprocess
  aggregation when ``PROMETHEUS_MULTIPROC_DIR`` is set).

An app's ``celery_app.py`` is one :func:`celery_app_factory` call (its ``make_celery``, which also
binds the app's :class:`WorkerRuntime`) and ``__getattr__ = lazy_celery_app(__name__, make_celery)``;
its tasks find their runtime with a :class:`RuntimeRegistry`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypedDict, TypeVar, cast

from celery import Celery, Task, signals
from celery.schedules import crontab
from kombu import Queue
from psycopg import Connection
from psycopg.rows import DictRow
from pydantic import SecretStr

from unde_common.auth import start_metrics_server
from unde_common.db import connect
from unde_common.logging import configure_logging
from unde_common.metrics import AppMetrics
from unde_common.settings import CeleryWorkerSettings

__all__ = [
    "CRONTAB_FIELDS",
    "AppSchedule",
    "CeleryOptions",
    "MakeCelery",
    "RuntimeRegistry",
    "ScheduledTask",
    "WorkerRuntime",
    "beat_schedule",
    "celery_app_factory",
    "create_celery_app",
    "crontab_fields",
    "empty_dir",
    "lazy_celery_app",
    "redis_broker",
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


class RedisBrokerSettings(Protocol):
    @property
    def redis_url(self) -> SecretStr: ...


class CeleryOptions(TypedDict, total=False):
    """The :func:`create_celery_app` options an app takes from its settings (broker, limits)."""

    broker_url: SecretStr | str
    result_backend: SecretStr | str | None
    visibility_timeout_s: int
    task_time_limit_s: int | None
    task_soft_time_limit_s: int | None
    annotations: Mapping[str, Mapping[str, Any]] | None


def redis_broker(settings: RedisBrokerSettings) -> CeleryOptions:
    """:func:`celery_app_factory`'s default options: the broker is the app's ``REDIS_URL``."""
    return {"broker_url": settings.redis_url}


S = TypeVar("S", bound=CeleryWorkerSettings)
S_contra = TypeVar("S_contra", bound=CeleryWorkerSettings, contravariant=True)


class MakeCelery(Protocol[S_contra]):
    """An app's ``make_celery``: its settings, or none to load them from the environment."""

    def __call__(self, settings: S_contra | None = None) -> Celery: ...


class AppSchedule(Protocol):
    """An app's ``schedule`` module: its queues (the first is the default), task routes and beat
    table."""

    @property
    def QUEUES(self) -> Sequence[str]: ...  # noqa: N802 (module constants)

    @property
    def ROUTES(self) -> Mapping[str, str]: ...  # noqa: N802

    @property
    def SCHEDULE(self) -> Sequence[ScheduledTask]: ...  # noqa: N802


def celery_app_factory(
    package: str,
    load_settings: Callable[[], S],
    version: str,
    schedule: AppSchedule,
    *,
    options: Callable[[S], CeleryOptions] | None = None,
    on_create: Callable[[Celery, S, AppMetrics], None] | None = None,
) -> MakeCelery[S]:
    """The ``make_celery(settings=None)`` of a worker app: loads the settings when not given, creates
    the app's metrics registry (``<app_name>_*``, version ``version``) before the worker forks,
    creates the directory of ``PROMETHEUS_MULTIPROC_DIR`` when set (the prefork children's metrics
    meet there), builds the Celery app of ``<package>.tasks`` with the queues, routes and beat table
    of ``schedule`` and ``options(settings)`` (default: the broker is the settings' ``redis_url``),
    then calls ``on_create`` (binding the app's runtime, worker signals of its own)."""

    def make_celery(settings: S | None = None) -> Celery:
        """The configured Celery app (settings loaded from the environment when not given)."""
        settings = settings or load_settings()
        mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if mp_dir:
            Path(mp_dir).mkdir(parents=True, exist_ok=True)
        metrics = AppMetrics(settings.app_name, version=version)
        app = create_celery_app(
            settings.app_name,
            settings,
            queues=schedule.QUEUES,
            routes=schedule.ROUTES,
            schedule=schedule.SCHEDULE,
            include=[f"{package}.tasks"],
            metrics=metrics,
            **(
                options(settings)
                if options is not None
                else redis_broker(cast(RedisBrokerSettings, settings))
            ),
        )
        if on_create is not None:
            on_create(app, settings, metrics)
        return app

    return make_celery


class StagingDbSettings(Protocol):
    """What :class:`WorkerRuntime` reads of an app's settings."""

    @property
    def app_name(self) -> str: ...

    @property
    def staging_db_url(self) -> SecretStr: ...

    @property
    def db_connect_timeout_s(self) -> int: ...


D = TypeVar("D", bound=StagingDbSettings)


class WorkerRuntime(Generic[D]):
    """What the tasks of a worker app need, built once per worker process: its settings and staging
    DB connections. An app subclasses it, adding its metrics and clients."""

    def __init__(self, settings: D) -> None:
        self.settings = settings

    def app_metrics(self, metrics: AppMetrics | None) -> AppMetrics:
        """``metrics`` (the Celery app's registry), or a registry of its own without the process
        collectors (a runtime built outside a worker: tests, tools, benches)."""
        return metrics or AppMetrics(self.settings.app_name, process_collectors=False)

    def connect(self) -> Connection[DictRow]:
        """A staging DB connection (autocommit; work happens in explicit transactions)."""
        s = self.settings
        return connect(s.staging_db_url, app_name=s.app_name, connect_timeout_s=s.db_connect_timeout_s)


R = TypeVar("R")


class RuntimeRegistry(Generic[S, R]):
    """The runtime of each Celery app of the process, by app name. ``make_celery`` binds one built
    from its settings and metrics (:meth:`bind_new`, its ``on_create``); a task of an app with none
    bound builds one from the environment (``load_settings``)."""

    def __init__(self, build: Callable[[S, AppMetrics | None], R], load_settings: Callable[[], S]) -> None:
        self._build = build
        self._load_settings = load_settings
        self._runtimes: dict[str, R] = {}

    def bind(self, app: Celery, runtime: R) -> None:
        """Make ``runtime`` the one the tasks of ``app`` use."""
        self._runtimes[app.main or ""] = runtime

    def bind_new(self, app: Celery, settings: S, metrics: AppMetrics) -> None:
        """Bind a runtime built from ``settings`` and the Celery app's ``metrics``."""
        self.bind(app, self._build(settings, metrics))

    def for_app(self, app: Any) -> R:
        """The runtime of the Celery app running a task."""
        key = getattr(app, "main", "") or ""
        if key not in self._runtimes:
            self._runtimes[key] = self._build(self._load_settings(), None)
        return self._runtimes[key]


def empty_dir(root: Path) -> int:
    """Remove everything in ``root`` (keeping ``root``; a missing one is fine): a worker's scratch
    directory, emptied by its daily cleanup task. Returns the number of entries removed."""
    if not root.is_dir():
        return 0
    removed = 0
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


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
        start_metrics_server(
            metrics.exposition_registry(),
            settings.metrics_port,
            settings.metrics_host,
            settings.service_monitoring_sha256,
        )
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
