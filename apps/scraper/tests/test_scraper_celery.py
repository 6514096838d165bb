"""Celery wiring of scraper: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A scraper.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

from scraper.celery_app import make_celery
from scraper.schedule import QUEUES
from scraper.settings import ScraperSettings
from unde_testkit.apptests import ANY_DAY, EVERY_HOUR, CeleryAppSpec, CeleryAppTests


class TestCelery(CeleryAppTests):
    spec = CeleryAppSpec(
        app="scraper",
        settings=ScraperSettings,
        make_celery=make_celery,
        queues=QUEUES,
        schedule={  # spec 01 §18
            "availability_poll": ({0}, EVERY_HOUR, ANY_DAY, "scraper"),  # every hour at :00
            "sync_to_production": ({10}, EVERY_HOUR, ANY_DAY, "scraper"),  # every hour at :10
            "cleanup_old_data": ({0}, {4}, ANY_DAY, "scraper"),  # daily 04:00
        },
        task_queues={
            "scraper.availability_poll": "scraper",
            "scraper.sync_to_production": "scraper",
            "scraper.cleanup_old_data": "scraper",
        },
        redis_db=7,
        conf={"task_ignore_result": True},
    )
