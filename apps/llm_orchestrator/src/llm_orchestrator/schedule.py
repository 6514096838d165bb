"""Queues, routes and beat schedule of llm_orchestrator: spec 01 §18, times in ``CELERY_TIMEZONE``; this table
is the schedule's one owner (apps/README.md "Beat schedules").

``life_event_expiry`` is the shard's 03:00 job (spec 01: "Local Shard (cron)"): the orchestrator
runs it on every shard, since it is the one app that holds the shards' knowledge logins and the
routing to their current primaries (a cron job on each shard host would also run on a replica).
"""

from __future__ import annotations

from typing import Final

from unde_common.schedule import schedule_table

QUEUES: Final[tuple[str, ...]] = (
    "dialogue_queue",
    "enrichment",
)
ROUTES: Final[dict[str, str]] = {
    "llm_orchestrator.generate_response": "dialogue_queue",
    "llm_orchestrator.verify_and_replay": "dialogue_queue",
    "llm_orchestrator.forget": "dialogue_queue",
    "llm_orchestrator.erase_account": "dialogue_queue",
    "llm_orchestrator.profile": "dialogue_queue",
    "llm_orchestrator.enrich*": "enrichment",
    "llm_orchestrator.extraction_review_sample": "enrichment",
    "llm_orchestrator.life_event_expiry": "enrichment",
}
SCHEDULE = schedule_table(
    "llm_orchestrator",
    {
        "enrichment_ttl_recovery": ("0", "*/6", "*", "every 6 hours at :00"),
        "life_event_expiry": ("0", "3", "*", "daily 03:00"),
        "extraction_review_sample": ("0", "6", "*", "daily 06:00"),
    },
    queue="enrichment",
)
