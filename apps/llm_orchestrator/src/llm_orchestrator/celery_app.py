"""Celery app of llm_orchestrator.

Broker ``CELERY_BROKER_URL`` (local-redis DB 11) for both queues: ``dialogue_queue`` (the hot path,
``generate_response``, 30 s hard limit) and ``enrichment`` (message enrichment, TTL recovery,
extraction review); beat schedule from :mod:`llm_orchestrator.schedule`. One worker per queue, so a
burst of enrichment never delays a dialogue:

    celery -A llm_orchestrator.celery_app worker -Q dialogue_queue -c 4 --max-tasks-per-child=500
    celery -A llm_orchestrator.celery_app worker -Q enrichment -c 2
    celery -A llm_orchestrator.celery_app beat

``app`` is built on first access (``lazy_celery_app``), so importing this module reads no settings.
"""

from __future__ import annotations

from celery import Celery

from llm_orchestrator import __version__
from llm_orchestrator.schedule import QUEUES, ROUTES, SCHEDULE
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_common.metrics import AppMetrics
from unde_common.worker import create_celery_app, lazy_celery_app


def make_celery(settings: LlmOrchestratorSettings | None = None) -> Celery:
    """The configured Celery app (settings loaded from the environment when not given)."""
    settings = settings or LlmOrchestratorSettings.load()
    return create_celery_app(
        settings.app_name,
        settings,
        broker_url=settings.celery_broker_url,
        result_backend=settings.celery_result_backend,
        annotations={
            "llm_orchestrator.generate_response": {
                "time_limit": settings.dialogue_time_limit_s,
                "soft_time_limit": settings.dialogue_soft_time_limit_s,
            }
        },
        queues=QUEUES,
        routes=ROUTES,
        schedule=SCHEDULE,
        include=["llm_orchestrator.tasks"],
        metrics=AppMetrics(settings.app_name, version=__version__),
    )


__getattr__ = lazy_celery_app(__name__, make_celery)
