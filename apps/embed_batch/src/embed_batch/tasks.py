"""Celery tasks of embed_batch (queue ``embed_batch``; see :mod:`embed_batch.jobs`).

- ``embed_batch.run_job(job_id)``: what ``POST /embed_batch`` enqueues;
- ``embed_batch.embedding_batch_sync``: Monday 02:00, new SKUs / photos (scope ``new``);
- ``embed_batch.embedding_progressive``: Wednesday 03:00, more photos of SKUs with low rerank
  scores (scope ``progressive``).

Each worker process loads the ONNX model once, on its first task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from celery import shared_task

from embed_batch.jobs import JobStore, run_job
from embed_batch.settings import EmbedBatchSettings
from embedder.model import ImageEncoder
from unde_common.db import PoolConfig, create_pool
from unde_common.metrics import AppMetrics
from unde_common.s3 import ObjectStore


@dataclass
class Runtime:
    settings: EmbedBatchSettings
    db: Any
    store: ObjectStore
    encoder: ImageEncoder
    jobs: JobStore


_RUNTIME: list[Runtime] = []


def runtime() -> Runtime:
    if not _RUNTIME:
        settings = EmbedBatchSettings.load()
        _RUNTIME.append(
            Runtime(
                settings,
                create_pool(
                    settings.production_db_url,
                    app_name="embed_batch",
                    name="production_db",
                    config=PoolConfig.from_settings(settings),
                ),
                ObjectStore.from_settings(settings),
                ImageEncoder(
                    settings.model_path,
                    dim=settings.embedding_dim,
                    threads=settings.onnx_threads,
                    providers=settings.onnx_providers,
                ),
                JobStore(redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=10)),
            )
        )
    return _RUNTIME[0]


def worker_metrics() -> tuple[Any, Any, Any, Any]:
    from embed_batch.celery_app import app_metrics

    m: AppMetrics = app_metrics()
    return (
        m.counter("images", "Photos embedded and written."),
        m.counter("errors", "Photos that could not be embedded (missing, not an image, too large)."),
        m.gauge(
            "throughput_imgs_sec", "Photos per second of the latest job.", multiprocess_mode="mostrecent"
        ),
        m.gauge("job_duration_sec", "Run time of the latest job (s).", multiprocess_mode="mostrecent"),
    )


def _run(job_id: str) -> dict[str, Any]:
    rt = runtime()
    images, errors, throughput, duration = worker_metrics()

    def on_batch(ok: int, failed: int) -> None:
        images.inc(ok)
        errors.inc(failed)

    result = run_job(
        job_id,
        settings=rt.settings,
        db=rt.db,
        store=rt.store,
        encoder=rt.encoder,
        jobs=rt.jobs,
        on_batch=on_batch,
    )
    if result is None:
        return {"job_id": job_id, "state": "running elsewhere"}
    throughput.set(result.rate)
    duration.set(result.seconds)
    return {"job_id": job_id, "done": result.done, "total": result.total, "errors": result.errors}


@shared_task(name="embed_batch.run_job")
def run_embedding_job(job_id: str) -> dict[str, Any]:
    """Run (or resume) one embedding job."""
    return _run(job_id)


@shared_task(name="embed_batch.embedding_batch_sync")
def embedding_batch_sync() -> dict[str, Any]:
    """New SKUs → FashionCLIP → sku_image_embeddings."""
    rt = runtime()
    return _run(rt.jobs.create("new", rt.settings.batch_size))


@shared_task(name="embed_batch.embedding_progressive")
def embedding_progressive() -> dict[str, Any]:
    """More photos for SKUs with low rerank scores."""
    rt = runtime()
    return _run(rt.jobs.create("progressive", rt.settings.batch_size))
