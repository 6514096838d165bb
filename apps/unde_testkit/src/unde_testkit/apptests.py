"""The test suites that apps of one kind share, written once; each app's test module gives its data.

- :class:`CeleryAppTests`: a Celery app's beat schedule (spec 01 §18), task routes, broker settings,
  the lazily built module attribute and ``celery -A <app>.celery_app worker`` against a real Redis.
- :class:`ServiceAppTests`: an HTTP service's /health (live and unreachable dependencies),
  /health/live, /metrics and the ``python -m <app>`` entry point.
- Fixture bodies of the catalog jobs' tests: :func:`staging_database`, :func:`serving`,
  :func:`truncated`, :func:`fetch_product`.
- :func:`recognition_pipeline`: a recognition :class:`~recognition.pipeline.Pipeline` wired to the
  recognition test bed (the pipeline tests and ``bench/recognition.py``).

A suite is used by subclassing it in the app's test module with a ``spec``; pytest collects the
inherited test methods under the subclass (the suites' own names do not start with ``Test``)::

    class TestCelery(CeleryAppTests):
        spec = CeleryAppSpec(app="scraper", settings=ScraperSettings, make_celery=make_celery, ...)
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Protocol, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from unde_common.settings import UndeSettings, redis_db
from unde_testkit.catalog_testing import login_dsn, migrated_database
from unde_testkit.testing import (
    CronSpec,
    EnvWriter,
    EnvWriterFactory,
    LoopbackServer,
    PostgresHandle,
    assert_beat_schedule,
    assert_entry_point,
    assert_health_fails,
    assert_health_ok,
    assert_lazy_celery_module,
    assert_task_routes,
    assert_worker_serves_metrics,
    free_port,
)

if TYPE_CHECKING:
    from celery import Celery
    from fastapi import FastAPI

    from recognition.pipeline import Pipeline
    from unde_testkit.recognition_testbed import Stack

__all__ = [
    "ANY_DAY",
    "EVERY_HOUR",
    "CeleryAppSpec",
    "CeleryAppTests",
    "ServiceAppSpec",
    "ServiceAppTests",
    "fetch_product",
    "recognition_pipeline",
    "serving",
    "staging_database",
    "truncated",
]

S = TypeVar("S", bound=UndeSettings)

# --------------------------------------------------------------------------- Celery apps


#: the crontab fields of "every hour" and "every day of the week", for a spec's schedule
EVERY_HOUR: Final[set[int]] = set(range(24))
ANY_DAY: Final[set[int]] = set(range(7))


@dataclass(frozen=True)
class CeleryAppSpec(Generic[S]):
    """What one Celery app must be: its package, settings, factory and the expected wiring."""

    #: the package (``celery -A <app>.celery_app``), also the Celery app's name and metrics prefix
    app: str
    settings: type[S]
    make_celery: Callable[[S], Celery]
    #: the queues the app declares, the default first (the worker consumes them all)
    queues: Sequence[str]
    #: the Redis database of the broker (and of the result backend, where ``result_backend``)
    redis_db: int
    #: beat entry → (minute, hour, day_of_week, queue), as spec 01 §18 says; empty for an app that
    #: only serves requests from its queue
    schedule: Mapping[str, CronSpec]
    #: task name → the queue Celery's router sends it to
    task_queues: Mapping[str, str]
    #: the settings (environment names) the worker test points at the broker
    broker_env: Sequence[str] = ("REDIS_URL",)
    result_backend: bool = False
    #: Celery configuration values the app's settings give (``app.conf[key] == value``)
    conf: Mapping[str, object] = field(default_factory=dict)


class CeleryAppTests:
    """The wiring checks of a Celery app; a subclass sets ``spec``."""

    spec: ClassVar[CeleryAppSpec[Any]]

    @pytest.fixture
    def write_env(self, env_writer: EnvWriterFactory) -> EnvWriter:
        return env_writer(self.spec.settings)

    @pytest.fixture
    def celery(self, write_env: EnvWriter) -> Celery:
        write_env()
        app = self.spec.make_celery(self.spec.settings.load())
        importlib.import_module(f"{self.spec.app}.tasks")  # registers the shared tasks
        return app

    def test_beat_schedule_is_spec_01_section_18(self, celery: Celery) -> None:
        assert_beat_schedule(celery, self.spec.schedule)

    def test_tasks_route_to_their_queues(self, celery: Celery) -> None:
        assert_task_routes(celery, self.spec.queues, self.spec.task_queues)

    def test_broker_comes_from_settings(self, celery: Celery) -> None:
        assert redis_db(celery.conf.broker_url) == self.spec.redis_db
        if self.spec.result_backend:
            assert redis_db(celery.conf.result_backend) == self.spec.redis_db
        for key, value in self.spec.conf.items():
            assert celery.conf[key] == value, key

    def test_module_attribute_app_is_built_lazily(self, write_env: EnvWriter) -> None:
        write_env()
        assert_lazy_celery_module(f"{self.spec.app}.celery_app", self.spec.app)

    def test_worker_command_starts_and_serves_metrics(self, write_env: EnvWriter, redis_url: str) -> None:
        port = free_port()
        broker = redis_url.replace("/0", f"/{self.spec.redis_db}")
        env_file = write_env({**dict.fromkeys(self.spec.broker_env, broker), "METRICS_PORT": str(port)})
        assert_worker_serves_metrics(self.spec.app, self.spec.queues, env_file, port)


# --------------------------------------------------------------------------- HTTP services

#: the password in the unreachable dependencies' URLs, which /health must not repeat
_SECRET = "hunter2"  # noqa: S105


@dataclass(frozen=True)
class ServiceAppSpec(Generic[S]):
    """What one HTTP service must be: its package, settings, app factory and /health checks."""

    #: the package (``python -m <app>``), also the app's name in /health/live and its metrics
    app: str
    settings: type[S]
    create: Callable[[S], FastAPI]
    #: /health check → the setting (environment name) that points at it: ``redis`` is a Redis URL,
    #: a ``*_db`` check a PostgreSQL DSN
    dependencies: Mapping[str, str]
    #: the Redis database of the app's ``redis`` check
    redis_db: int


def _is_postgres(check: str) -> bool:
    if check == "redis":
        return False
    if check.endswith("_db"):
        return True
    raise ValueError(f"unknown kind of /health check {check!r}: 'redis' or '*_db'")


class ServiceAppTests:
    """/health, /health/live, /metrics and the entry point of an HTTP service; a subclass sets
    ``spec``. The live dependencies are the session's PostgreSQL (``pg``) and Redis (``redis_url``),
    started only when the spec names such a check."""

    spec: ClassVar[ServiceAppSpec[Any]]

    @pytest.fixture
    def write_env(self, env_writer: EnvWriterFactory) -> EnvWriter:
        return env_writer(self.spec.settings)

    def test_health_and_metrics(self, write_env: EnvWriter, request: pytest.FixtureRequest) -> None:
        values: dict[str, str] = {}
        for check, env in self.spec.dependencies.items():
            if _is_postgres(check):
                pg: PostgresHandle = request.getfixturevalue("pg")
                values[env] = pg.dsn
            else:
                redis_url: str = request.getfixturevalue("redis_url")
                values[env] = redis_url.replace("/0", f"/{self.spec.redis_db}")
        write_env(values)
        app = self.spec.create(self.spec.settings.load())
        assert_health_ok(app, self.spec.app, list(self.spec.dependencies))

    def test_health_names_unreachable_dependencies(self, write_env: EnvWriter) -> None:
        values = {"HEALTH_CHECK_TIMEOUT_S": "1"}
        for check, env in self.spec.dependencies.items():
            if _is_postgres(check):
                values[env] = f"postgresql://u:{_SECRET}@127.0.0.1:{free_port()}/x"
                values["DB_CONNECT_TIMEOUT_S"] = "1"
            else:
                values[env] = f"redis://:{_SECRET}@127.0.0.1:{free_port()}/{self.spec.redis_db}"
        write_env(values)
        app = self.spec.create(self.spec.settings.load())
        assert_health_fails(app, list(self.spec.dependencies), secret=_SECRET)

    def test_entry_point_serves_and_logs_json(self, write_env: EnvWriter) -> None:
        assert_entry_point(self.spec.app, write_env)


# --------------------------------------------------------------------------- catalog jobs


def staging_database(pg: PostgresHandle, name: str, login: str, group: str) -> tuple[str, str]:
    """Database ``name`` migrated to the staging schema: (superuser DSN, DSN of the ``login`` user,
    a member of ``group`` only, as the postgresql role creates it)."""
    return migrated_database(pg, name, "unde_staging"), login_dsn(pg, name, login, [group])


class _Simulator(Protocol):
    @property
    def app(self) -> Any: ...


Sim = TypeVar("Sim", bound=_Simulator)


def serving(simulator: Sim) -> Iterator[tuple[Sim, str]]:
    """Serve ``simulator.app`` on loopback: a fixture body, ``yield from serving(MySimulator())``
    gives the fixture's value ``(simulator, base URL)``."""
    with LoopbackServer(simulator.app) as server:
        yield simulator, server.url


@contextlib.contextmanager
def truncated(dsn: str, *tables: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An autocommit connection (rows as dicts) to ``dsn`` after emptying ``tables``."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
        yield conn


def fetch_product(db: psycopg.Connection[Any], external_id: str) -> dict[str, Any]:
    """The ``raw_products`` row of ``external_id`` (which must exist)."""
    row = db.execute("SELECT * FROM raw_products WHERE external_id = %s", (external_id,)).fetchone()
    assert row is not None, external_id
    return dict(row)


# --------------------------------------------------------------------------- recognition


@contextlib.contextmanager
def recognition_pipeline(
    bed: Stack, *, app_name: str, gateway: str | None = None, **overrides: Any
) -> Iterator[Pipeline]:
    """A recognition pipeline on the test bed's databases, Redis, llm-reranker and ximilar-gw (a
    fresh gateway with the bed's defaults unless ``gateway`` is given); ``overrides`` are settings.
    Its thread pool and database pools are closed on exit."""
    import redis

    from recognition.pipeline import Pipeline, PipelineMetrics
    from recognition.settings import RecognitionSettings
    from unde_common.db import create_pool
    from unde_common.metrics import AppMetrics

    settings = RecognitionSettings.load(
        ximilar_gw_url=gateway or bed.gateway(),
        llm_reranker_url=bed.reranker_url,
        database_url=bed.main_dsn,
        staging_db_url=bed.staging_dsn,
        celery_broker_url=bed.redis_url,
        celery_result_backend=bed.redis_url,
        **overrides,
    )
    pipeline = Pipeline(
        settings,
        main_db=create_pool(bed.main_dsn, app_name=app_name, wait=True),
        staging_db=create_pool(bed.staging_dsn, app_name=app_name, wait=True),
        redis_client=redis.Redis.from_url(bed.redis_url),
        metrics=PipelineMetrics(AppMetrics("recognition", process_collectors=False)),
    )
    try:
        yield pipeline
    finally:
        pipeline.close()
        pipeline.main_db.close()
        pipeline.staging_db.close()
