"""Celery app of recognition.

Broker ``CELERY_BROKER_URL`` (Redis DB 6), queue(s) ``recognition_queue``, beat schedule
from :mod:`recognition.schedule`.

    celery -A recognition.celery_app worker -Q recognition_queue
    celery -A recognition.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

from recognition import __version__
from recognition.pipeline import PipelineMetrics
from recognition.schedule import QUEUES, ROUTES, SCHEDULE
from recognition.settings import RecognitionSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app

_PIPELINE_METRICS: list[PipelineMetrics] = []


def pipeline_metrics() -> PipelineMetrics:
    """The pipeline metrics of the app built by :func:`make_celery` (created before the fork, so the
    worker exports them from the start)."""
    if not _PIPELINE_METRICS:
        _PIPELINE_METRICS.append(PipelineMetrics(AppMetrics("recognition", version=__version__)))
    return _PIPELINE_METRICS[-1]


def make_celery(settings: RecognitionSettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given).

    The prefork children's metrics reach the worker's /metrics through prometheus_client's
    multiprocess mode: the unit sets ``PROMETHEUS_MULTIPROC_DIR=/tmp/unde-metrics`` (a private /tmp,
    empty at every start); the directory is created here, before any metric exists.
    """
    settings = settings or RecognitionSettings.load()
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp_dir:
        Path(mp_dir).mkdir(parents=True, exist_ok=True)
    metrics = AppMetrics(settings.app_name, version=__version__)
    _PIPELINE_METRICS.append(PipelineMetrics(metrics))
    return create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.celery_broker_url,
        result_backend=settings.celery_result_backend,
        task_time_limit_s=settings.task_time_limit_s,
        task_soft_time_limit_s=settings.task_soft_time_limit_s,
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["recognition.tasks"],
        metrics=metrics,
    )


__getattr__ = lazy_celery_app(__name__, make_celery)
