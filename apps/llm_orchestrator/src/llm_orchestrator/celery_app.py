"""Celery app of llm_orchestrator.

Broker ``CELERY_BROKER_URL`` (local-redis DB 11) for both queues: ``dialogue_queue`` (the hot path,
``generate_response``, 30 s hard limit) and ``enrichment`` (message enrichment, TTL recovery,
life_event expiry, extraction review); beat schedule from :mod:`llm_orchestrator.schedule`. One
worker per queue, so a burst of enrichment never delays a dialogue:

    celery -A llm_orchestrator.celery_app worker -Q dialogue_queue -c 4 --max-tasks-per-child=500
    celery -A llm_orchestrator.celery_app worker -Q enrichment -c 2
    celery -A llm_orchestrator.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from llm_orchestrator import __version__, schedule
from llm_orchestrator.metrics import OrchestratorMetrics
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import celery_app_factory, lazy_celery_app

_METRICS: list[OrchestratorMetrics] = []


def orchestrator_metrics() -> OrchestratorMetrics:
    """The metrics of the app built by :func:`make_celery` (created before the fork, so the worker
    exports them from the start), or a registry of their own outside a worker."""
    if not _METRICS:
        _METRICS.append(OrchestratorMetrics(AppMetrics("llm_orchestrator", version=__version__)))
    return _METRICS[-1]


make_celery = celery_app_factory(
    "llm_orchestrator",
    LlmOrchestratorSettings.load,
    __version__,
    schedule,
    options=lambda s: {
        "broker_url": s.celery_broker_url,
        "result_backend": s.celery_result_backend,
        "annotations": {
            "llm_orchestrator.generate_response": {
                "time_limit": s.dialogue_time_limit_s,
                "soft_time_limit": s.dialogue_soft_time_limit_s,
            }
        },
    },
    on_create=lambda _app, _settings, metrics: _METRICS.append(OrchestratorMetrics(metrics)),
)


__getattr__ = lazy_celery_app(__name__, make_celery)
