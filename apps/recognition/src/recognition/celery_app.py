"""Celery app of recognition.

Broker ``CELERY_BROKER_URL`` (Redis DB 6), queue(s) ``recognition_queue``, beat schedule
from :mod:`recognition.schedule`.

    celery -A recognition.celery_app worker -Q recognition_queue
    celery -A recognition.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from recognition import __version__, schedule
from recognition.pipeline import PipelineMetrics
from recognition.settings import RecognitionSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import celery_app_factory, lazy_celery_app

_PIPELINE_METRICS: list[PipelineMetrics] = []


def pipeline_metrics() -> PipelineMetrics:
    """The pipeline metrics of the app built by :func:`make_celery` (created before the fork, so the
    worker exports them from the start)."""
    if not _PIPELINE_METRICS:
        _PIPELINE_METRICS.append(PipelineMetrics(AppMetrics("recognition", version=__version__)))
    return _PIPELINE_METRICS[-1]


# The prefork children's metrics reach the worker's /metrics through prometheus_client's
# multiprocess mode: the unit sets PROMETHEUS_MULTIPROC_DIR (a private directory, empty at every
# start), which celery_app_factory creates before any metric exists.
make_celery = celery_app_factory(
    "recognition",
    RecognitionSettings.load,
    __version__,
    schedule,
    options=lambda s: {
        "broker_url": s.celery_broker_url,
        "result_backend": s.celery_result_backend,
        "task_time_limit_s": s.task_time_limit_s,
        "task_soft_time_limit_s": s.task_soft_time_limit_s,
    },
    on_create=lambda _app, _settings, metrics: _PIPELINE_METRICS.append(PipelineMetrics(metrics)),
)


__getattr__ = lazy_celery_app(__name__, make_celery)
