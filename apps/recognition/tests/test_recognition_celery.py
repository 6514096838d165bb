"""Celery wiring of recognition: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A recognition.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

from recognition.celery_app import make_celery
from recognition.schedule import QUEUES
from recognition.settings import RecognitionSettings
from unde_testkit.apptests import CeleryAppSpec, CeleryAppTests


class TestCelery(CeleryAppTests):
    spec = CeleryAppSpec(
        app="recognition",
        settings=RecognitionSettings,
        make_celery=make_celery,
        queues=QUEUES,
        schedule={},  # spec 01 §18: no schedule, it serves requests from its queue
        task_queues={
            "recognition.recognize_photo": "recognition_queue",
        },
        redis_db=6,
        broker_env=("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"),
        result_backend=True,
        conf={"task_time_limit": 30, "task_soft_time_limit": 25},
    )
