"""HTTP service of embed_batch (spec 01 day 5b).

- ``POST /embed_batch {"scope": "all"|"new"|"progressive"|"brand:<name>", "batch_size": 500}`` →
  202 ``{"job_id", "status_url"}``; the job runs on the Celery workers (queue ``embed_batch``).
  409 while another job is queued or running (its id is named), 422 on a bad body.
- ``GET /status`` (the latest job) or ``/status?job_id=`` → progress, rate (photos/s), errors,
  ETA; 404 when there is no such job.

Metrics (spec 01 §19), read from the job state at scrape time: ``embed_batch_throughput_imgs_sec``
(alert < 3), ``embed_batch_job_duration_sec`` (alert > 86400), ``embed_batch_errors`` and
``embed_batch_error_ratio`` (alert > 5%), ``embed_batch_progress_ratio``; and the production DB's
``sku_image_embeddings_count`` and ``sku_image_embeddings_hnsw_size_bytes`` (alert > 20 GB).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from embed_batch import __version__
from embed_batch.jobs import JobStore, ScopeError, validate_scope
from embed_batch.schedule import QUEUES
from embed_batch.settings import EmbedBatchSettings
from unde_common.db import AsyncPools, PoolConfig, connect
from unde_common.health import Check, create_app, redis_check
from unde_common.metrics import AppMetrics


class BatchBody(BaseModel):
    scope: str = Field(default="new", min_length=1, max_length=60)
    batch_size: int = Field(default=500, ge=1, le=5000)


def _view(job: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    total, done = int(job["total"]), int(job["done"])
    started = job.get("started_at")
    finished = job.get("finished_at")
    elapsed = ((finished or now) - started) if isinstance(started, float) else 0.0
    rate = float(job.get("rate") or 0.0)
    left = max(0, total - done)
    return {
        "job_id": job["id"],
        "scope": job["scope"],
        "state": job["state"],
        "batch_size": job["batch_size"],
        "total": total,
        "done": done,
        "errors": job["errors"],
        "progress": round(done / total, 4) if total else (1.0 if job["state"] == "done" else 0.0),
        "rate_imgs_sec": rate,
        "elapsed_sec": round(elapsed, 1),
        "eta_sec": round(left / rate, 1) if rate > 0 and job["state"] == "running" else None,
        "last_errors": job.get("last_errors", []),
        "failure": job.get("failure"),
    }


class JobCollector(Collector):
    """Gauges of the latest job, read from Redis when Prometheus scrapes."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            job = self.jobs.get()
        except redis.RedisError:
            return
        if job is None:
            return
        view = _view(job)
        processed = view["done"] + view["errors"]
        for name, doc, value in (
            (
                "embed_batch_throughput_imgs_sec",
                "Photos per second of the latest job.",
                view["rate_imgs_sec"],
            ),
            ("embed_batch_job_duration_sec", "Run time of the latest job (s).", view["elapsed_sec"]),
            ("embed_batch_errors", "Photos of the latest job that failed.", view["errors"]),
            (
                "embed_batch_error_ratio",
                "Failed / processed photos of the latest job.",
                view["errors"] / max(1, processed),
            ),
            ("embed_batch_progress_ratio", "Done / total photos of the latest job.", view["progress"]),
            (
                "embed_batch_job_running",
                "1 while a job is queued or running.",
                float(view["state"] in ("queued", "running")),
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=float(value))


class EmbeddingsCollector(Collector):
    """``sku_image_embeddings_count`` and ``sku_image_embeddings_hnsw_size_bytes`` (spec 01 §19,
    "Production DB"; alert > 20 GB), read from the production DB when Prometheus scrapes."""

    def __init__(self, dsn: str, timeout_s: int) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            # unde_common.db.connect: SCRAM required and TLS settings, as every other connection
            with connect(self.dsn, app_name="embed_batch", connect_timeout_s=self.timeout_s) as conn:
                row = conn.execute(
                    "SELECT count(*) AS n, pg_relation_size('unde_ai.idx_sku_image_embeddings_hnsw') AS size"
                    " FROM unde_ai.sku_image_embeddings"
                ).fetchone()
        except psycopg.Error:
            return
        if row is None:
            return
        yield GaugeMetricFamily(
            "sku_image_embeddings_count", "Rows of unde_ai.sku_image_embeddings.", value=row["n"]
        )
        yield GaugeMetricFamily(
            "sku_image_embeddings_hnsw_size_bytes",
            "Size of idx_sku_image_embeddings_hnsw.",
            value=row["size"],
        )


def create(settings: EmbedBatchSettings | None = None) -> FastAPI:
    """The FastAPI app (uvicorn factory ``embed_batch.app:create``)."""
    settings = settings or EmbedBatchSettings.load()
    pools = AsyncPools(
        settings.app_name, {"production_db": settings.production_db_url}, PoolConfig.from_settings(settings)
    )
    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(), socket_connect_timeout=2, socket_timeout=2
    )
    jobs = JobStore(client)
    metrics = AppMetrics(settings.app_name, version=__version__)
    metrics.registry.register(JobCollector(jobs))
    metrics.registry.register(
        EmbeddingsCollector(settings.production_db_url.get_secret_value(), settings.db_connect_timeout_s)
    )
    checks: dict[str, Check] = {
        **pools.checks(settings.health_check_timeout_s),
        "redis": redis_check(settings.redis_url, timeout_s=settings.health_check_timeout_s),
    }
    app = create_app(
        settings.app_name, settings, checks, metrics=metrics, version=__version__, lifespan=pools.lifespan
    )
    app.state.db = pools
    celery: list[Any] = []

    def producer() -> Any:
        if not celery:
            from embed_batch.celery_app import make_celery

            celery.append(make_celery(settings))
        return celery[0]

    @app.post("/embed_batch", status_code=202)
    def embed_batch(body: BatchBody) -> Any:
        try:
            scope = validate_scope(body.scope)
        except ScopeError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        current = jobs.get()
        if current is not None and current["state"] in ("queued", "running"):
            beat = float(current.get("heartbeat") or current.get("created_at") or 0)
            if time.time() - beat < settings.job_stale_after_s:
                return JSONResponse(
                    {"detail": f"job {current['id']} ({current['scope']}) is {current['state']}"},
                    status_code=409,
                )
        job_id = jobs.create(scope, body.batch_size)
        producer().send_task("embed_batch.run_job", args=[job_id], queue=QUEUES[0])
        return {"job_id": job_id, "status_url": f"/status?job_id={job_id}"}

    @app.get("/status")
    def status(job_id: str | None = None) -> Any:
        job = jobs.get(job_id)
        if job is None:
            return JSONResponse({"detail": f"no embedding job {job_id or '(none yet)'}"}, status_code=404)
        return _view(job)

    return app
