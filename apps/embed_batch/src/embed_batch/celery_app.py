"""Celery app of embed_batch.

Broker ``REDIS_URL`` (Redis DB 7), queue(s) ``embed_batch``, beat schedule
from :mod:`embed_batch.schedule`.

    celery -A embed_batch.celery_app worker -Q embed_batch
    celery -A embed_batch.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

import logging
import time

import redis
from celery import Celery, signals

from embed_batch import __version__, schedule
from embed_batch.jobs import JobStore
from embed_batch.schedule import QUEUES
from embed_batch.settings import EmbedBatchSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import celery_app_factory, lazy_celery_app

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


def _on_create(app: Celery, settings: EmbedBatchSettings, metrics: AppMetrics) -> None:
    """Keep the app's metrics for the tasks; resume an interrupted job once the worker is ready."""
    _METRICS.append(metrics)

    def on_ready(sender: object = None, **_: object) -> None:
        if getattr(sender, "app", None) is app:
            try:
                resume_stale_job(app, settings)
            except redis.RedisError as exc:
                log.warning("could not check for an interrupted job", extra={"error": str(exc)})

    signals.worker_ready.connect(on_ready, weak=False, dispatch_uid=f"embed_batch:resume:{id(app)}")


make_celery = celery_app_factory(
    "embed_batch",
    EmbedBatchSettings.load,
    __version__,
    schedule,
    options=lambda s: {"broker_url": s.redis_url, "visibility_timeout_s": s.celery_visibility_timeout_s},
    on_create=_on_create,
)

log = logging.getLogger(__name__)

__getattr__ = lazy_celery_app(__name__, make_celery)
