"""Celery app of embed_batch.

Broker ``REDIS_URL`` (Redis DB 7), queue(s) ``embed_batch``, beat schedule
from :mod:`embed_batch.schedule`.

    celery -A embed_batch.celery_app worker -Q embed_batch
    celery -A embed_batch.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import redis
from celery import Celery, signals

from embed_batch import __version__
from embed_batch.jobs import JobStore
from embed_batch.schedule import QUEUES, ROUTES, SCHEDULE
from embed_batch.settings import EmbedBatchSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app

_METRICS: list[AppMetrics] = []


def app_metrics() -> AppMetrics:
    """The metrics of the app built by :func:`make_celery`."""
    if not _METRICS:
        _METRICS.append(AppMetrics("embed_batch", version=__version__))
    return _METRICS[-1]


def resume_stale_job(app: Celery, settings: EmbedBatchSettings) -> str | None:
    """A job left ``running`` (or ``queued``) by a crashed worker is enqueued again; the job only
    embeds what is still missing, so it resumes where it stopped. Returns the job id resumed."""
    jobs = JobStore(redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=5))
    job = jobs.get()
    if job is None or job["state"] not in ("running", "queued"):
        return None
    last = float(job.get("heartbeat") or job.get("created_at") or 0)
    if time.time() - last < settings.job_stale_after_s:
        return None
    app.send_task("embed_batch.run_job", args=[job["id"]], queue=QUEUES[0])
    log.warning("resuming an interrupted embedding job", extra={"job_id": job["id"]})
    return str(job["id"])


def make_celery(settings: EmbedBatchSettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given)."""
    settings = settings or EmbedBatchSettings.load()
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp_dir:
        Path(mp_dir).mkdir(parents=True, exist_ok=True)
    metrics = AppMetrics(settings.app_name, version=__version__)
    _METRICS.append(metrics)
    app = create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.redis_url,
        visibility_timeout_s=settings.celery_visibility_timeout_s,
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["embed_batch.tasks"],
        metrics=metrics,
    )

    def on_ready(sender: object = None, **_: object) -> None:
        if getattr(sender, "app", None) is app:
            try:
                resume_stale_job(app, settings)
            except redis.RedisError as exc:
                log.warning("could not check for an interrupted job", extra={"error": str(exc)})

    signals.worker_ready.connect(on_ready, weak=False, dispatch_uid=f"embed_batch:resume:{id(app)}")
    return app


log = logging.getLogger(__name__)

__getattr__ = lazy_celery_app(__name__, make_celery)
