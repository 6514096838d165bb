"""Celery wiring of llm_orchestrator: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A llm_orchestrator.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

from llm_orchestrator.celery_app import make_celery
from llm_orchestrator.schedule import QUEUES
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_testkit.apptests import ANY_DAY, CeleryAppSpec, CeleryAppTests


class TestCelery(CeleryAppTests):
    spec = CeleryAppSpec(
        app="llm_orchestrator",
        settings=LlmOrchestratorSettings,
        make_celery=make_celery,
        queues=QUEUES,
        schedule={  # spec 01 §18
            "enrichment_ttl_recovery": ({0}, {0, 6, 12, 18}, ANY_DAY, "enrichment"),  # every 6 hours at :00
            "extraction_review_sample": ({0}, {6}, ANY_DAY, "enrichment"),  # daily 06:00
            "life_event_expiry": ({0}, {3}, ANY_DAY, "enrichment"),  # daily 03:00 (the shard's job)
        },
        task_queues={
            "llm_orchestrator.generate_response": "dialogue_queue",
            "llm_orchestrator.verify_and_replay": "dialogue_queue",
            "llm_orchestrator.forget": "dialogue_queue",
            "llm_orchestrator.erase_account": "dialogue_queue",
            "llm_orchestrator.profile": "dialogue_queue",
            "llm_orchestrator.enrich_message": "enrichment",
            "llm_orchestrator.enrichment_ttl_recovery": "enrichment",
            "llm_orchestrator.extraction_review_sample": "enrichment",
            "llm_orchestrator.life_event_expiry": "enrichment",
        },
        redis_db=11,
        broker_env=("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"),
        result_backend=True,
        conf={
            "task_time_limit": None,
            "task_annotations": {
                "llm_orchestrator.generate_response": {"time_limit": 30, "soft_time_limit": 25}
            },
        },
    )
