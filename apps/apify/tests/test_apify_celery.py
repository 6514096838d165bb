"""Celery wiring of apify: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A apify.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

from apify.celery_app import make_celery
from apify.schedule import QUEUES
from apify.settings import ApifySettings
from unde_testkit.apptests import CeleryAppSpec, CeleryAppTests


class TestCelery(CeleryAppTests):
    spec = CeleryAppSpec(
        app="apify",
        settings=ApifySettings,
        make_celery=make_celery,
        queues=QUEUES,
        schedule={  # spec 01 §18
            "apify_zara": ({0}, {2}, {0}, "apify"),  # Sunday 02:00
            "apify_bershka": ({0}, {3}, {0}, "apify"),  # Sunday 03:00
            "apify_pullandbear": ({0}, {4}, {0}, "apify"),  # Sunday 04:00
            "apify_stradivarius": ({0}, {5}, {0}, "apify"),  # Sunday 05:00
            "apify_massimodutti": ({0}, {6}, {0}, "apify"),  # Sunday 06:00
            "apify_oysho": ({0}, {7}, {0}, "apify"),  # Sunday 07:00
        },
        task_queues={
            "apify.apify_zara": "apify",
            "apify.apify_bershka": "apify",
            "apify.apify_pullandbear": "apify",
            "apify.apify_stradivarius": "apify",
            "apify.apify_massimodutti": "apify",
            "apify.apify_oysho": "apify",
        },
        redis_db=7,
        conf={"task_ignore_result": True, "broker_transport_options": {"visibility_timeout": 21600}},
    )
