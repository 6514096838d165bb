"""Celery wiring of collage: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A collage.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

from collage.celery_app import make_celery
from collage.schedule import QUEUES
from collage.settings import CollageSettings
from unde_testkit.apptests import ANY_DAY, EVERY_HOUR, CeleryAppSpec, CeleryAppTests


class TestCelery(CeleryAppTests):
    spec = CeleryAppSpec(
        app="collage",
        settings=CollageSettings,
        make_celery=make_celery,
        queues=QUEUES,
        schedule={  # spec 01 §18
            "process_collages": (
                {0, 15, 30, 45},
                EVERY_HOUR,
                ANY_DAY,
                "collage",
            ),  # every 15 minutes (:00, :15, :30, :45)
            "retry_failed": ({30}, EVERY_HOUR, ANY_DAY, "collage"),  # every hour at :30
            "cleanup_temp_files": ({0}, {5}, ANY_DAY, "collage"),  # daily 05:00
        },
        task_queues={
            "collage.process_collages": "collage",
            "collage.retry_failed": "collage",
            "collage.cleanup_temp_files": "collage",
        },
        redis_db=8,
        conf={"task_ignore_result": True},
    )
