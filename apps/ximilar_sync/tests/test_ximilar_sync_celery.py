"""Celery wiring of ximilar_sync: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A ximilar_sync.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

from unde_testkit.apptests import ANY_DAY, CeleryAppSpec, CeleryAppTests
from ximilar_sync.celery_app import make_celery
from ximilar_sync.schedule import QUEUES
from ximilar_sync.settings import XimilarSyncSettings


class TestCelery(CeleryAppTests):
    spec = CeleryAppSpec(
        app="ximilar_sync",
        settings=XimilarSyncSettings,
        make_celery=make_celery,
        queues=QUEUES,
        schedule={  # spec 01 §18
            "ximilar_sync": ({0}, {10}, {0}, "ximilar_sync"),  # Sunday 10:00
            "ximilar_retry": ({0}, {12}, ANY_DAY, "ximilar_sync"),  # daily 12:00
        },
        task_queues={
            "ximilar_sync.ximilar_sync": "ximilar_sync",
            "ximilar_sync.ximilar_retry": "ximilar_sync",
        },
        redis_db=7,
        conf={"task_ignore_result": True},
    )
