"""Queues, routes and beat schedule of llm_orchestrator — spec 01 §18, times in ``CELERY_TIMEZONE`` (UTC).

| entry | when | queue |
|---|---|---|
| ``enrichment_ttl_recovery`` | every 6 hours at :00 | ``enrichment`` |
| ``extraction_review_sample`` | daily 06:00 | ``enrichment`` |
"""

from __future__ import annotations

from typing import Final

from unde_common.worker import ScheduledTask

QUEUES: Final[tuple[str, ...]] = (
    "dialogue_queue",
    "enrichment",
)
ROUTES: Final[dict[str, str]] = {
    "llm_orchestrator.generate_response": "dialogue_queue",
    "llm_orchestrator.enrich*": "enrichment",
    "llm_orchestrator.extraction_review_sample": "enrichment",
}
SCHEDULE: Final[tuple[ScheduledTask, ...]] = (
    ScheduledTask(
        "enrichment_ttl_recovery",
        "llm_orchestrator.enrichment_ttl_recovery",
        minute="0",
        hour="*/6",
        queue="enrichment",
        description="every 6 hours at :00",
    ),
    ScheduledTask(
        "extraction_review_sample",
        "llm_orchestrator.extraction_review_sample",
        minute="0",
        hour="6",
        queue="enrichment",
        description="daily 06:00",
    ),
)
