"""Celery tasks of recognition: ``recognition.recognize_photo`` on ``recognition_queue`` (time limit
30 s, soft 25 s; 2 prefork workers).

    recognize_photo.delay(photo_url, user_id, request_id)   # request_id: subscribe to
    # recognition:progress:<request_id> first to get the detection before the rest finishes

Each worker process builds its :class:`~recognition.pipeline.Pipeline` (DB pools, Redis, HTTP
clients) on its first task, after the fork.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import shared_task

from recognition.pipeline import Pipeline
from recognition.settings import RecognitionSettings
from unde_common.db import PoolConfig, create_pool

_PIPELINES: list[Pipeline] = []


def pipeline() -> Pipeline:
    """This process's pipeline (built on first use)."""
    if not _PIPELINES:
        from recognition.celery_app import pipeline_metrics

        settings = RecognitionSettings.load()
        config = PoolConfig.from_settings(settings)
        _PIPELINES.append(
            Pipeline(
                settings,
                main_db=create_pool(
                    settings.database_url, app_name="recognition", name="production_db", config=config
                ),
                staging_db=create_pool(
                    settings.staging_db_url, app_name="recognition", name="staging_db", config=config
                ),
                redis_client=redis.Redis.from_url(
                    settings.celery_broker_url.get_secret_value(), socket_connect_timeout=2, socket_timeout=2
                ),
                metrics=pipeline_metrics(),
            )
        )
    return _PIPELINES[0]


@shared_task(name="recognition.recognize_photo")
def recognize_photo(
    photo_url: str, user_id: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    """Photo → detected items with exact / similar / style matches (see recognition.pipeline)."""
    return pipeline().run(photo_url, user_id, request_id)
