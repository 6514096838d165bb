"""Celery wiring of embed_batch: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A embed_batch.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

from embed_batch.celery_app import make_celery
from embed_batch.schedule import QUEUES
from embed_batch.settings import EmbedBatchSettings
from unde_testkit.apptests import CeleryAppSpec, CeleryAppTests


class TestCelery(CeleryAppTests):
    spec = CeleryAppSpec(
        app="embed_batch",
        settings=EmbedBatchSettings,
        make_celery=make_celery,
        queues=QUEUES,
        schedule={  # spec 01 §18
            "embedding_batch_sync": ({0}, {2}, {1}, "embed_batch"),  # Monday 02:00
            "embedding_progressive": ({0}, {3}, {3}, "embed_batch"),  # Wednesday 03:00
        },
        task_queues={
            "embed_batch.embedding_batch_sync": "embed_batch",
            "embed_batch.embedding_progressive": "embed_batch",
        },
        redis_db=7,
        conf={"task_ignore_result": True, "broker_transport_options": {"visibility_timeout": 57600}},
    )
