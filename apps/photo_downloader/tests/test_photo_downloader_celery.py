"""Celery wiring of photo_downloader: the beat schedule is spec 01 §18, tasks route to their queues, and
``celery -A photo_downloader.celery_app worker`` runs against a real Redis."""

from __future__ import annotations

from photo_downloader.celery_app import make_celery
from photo_downloader.schedule import QUEUES
from photo_downloader.settings import PhotoDownloaderSettings
from unde_testkit.apptests import ANY_DAY, EVERY_HOUR, CeleryAppSpec, CeleryAppTests


class TestCelery(CeleryAppTests):
    spec = CeleryAppSpec(
        app="photo_downloader",
        settings=PhotoDownloaderSettings,
        make_celery=make_celery,
        queues=QUEUES,
        schedule={  # spec 01 §18
            "download_pending": (
                {0, 15, 30, 45},
                EVERY_HOUR,
                ANY_DAY,
                "photo_downloader",
            ),  # every 15 minutes (:00, :15, :30, :45)
            "download_retry": ({30}, EVERY_HOUR, ANY_DAY, "photo_downloader"),  # every hour at :30
            "cleanup_temp_files": ({0}, {5}, ANY_DAY, "photo_downloader"),  # daily 05:00
        },
        task_queues={
            "photo_downloader.download_pending": "photo_downloader",
            "photo_downloader.download_retry": "photo_downloader",
            "photo_downloader.cleanup_temp_files": "photo_downloader",
        },
        redis_db=7,
        conf={"task_ignore_result": True},
    )
