"""The fuzz run of embed_batch's HTTP API (unde_testkit.fuzz): schemathesis from its OpenAPI plus
hand-made bodies against a real PostgreSQL (production schema) and Redis (jobs and the Celery
broker) — no answer is a 5xx, none raises."""

from __future__ import annotations

import pytest

from embed_batch.app import create
from embed_batch.settings import EmbedBatchSettings
from unde_testkit.fuzz import fuzz_app
from unde_testkit.service_auth import service_client
from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database

pytestmark = pytest.mark.timeout(180)


def test_fuzz_finds_no_5xx(pg: PostgresHandle, redis_url: str) -> None:
    settings = EmbedBatchSettings.load(
        production_db_url=migrate_database(pg, "eb_fuzz_main", "unde_main"),
        redis_url=redis_url.rsplit("/", 1)[0] + "/7",
        s3_access_key="a",
        s3_secret_key="s",
    )
    with service_client(create(settings)) as client:
        report = fuzz_app(client, "embed_batch", max_examples=40)
    print(report.summary())
    assert report.requests > 100
    assert report.findings == [], report.summary()
