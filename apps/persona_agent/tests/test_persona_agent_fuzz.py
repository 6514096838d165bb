"""The fuzz run of persona_agent (unde_testkit.fuzz): schemathesis from its OpenAPI plus hand-made
bodies against a real shard PostgreSQL and Redis — no answer is a 5xx, none raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_agent.app import create
from persona_agent.settings import PersonaAgentSettings
from unde_testkit.fuzz import fuzz_app
from unde_testkit.service_auth import service_client
from unde_testkit.testing import PostgresHandle, redis_server
from unde_testkit.testing_sql import migrate_database

pytestmark = pytest.mark.timeout(180)


def test_fuzz_finds_no_5xx(pg: PostgresHandle, tmp_path: Path) -> None:
    # a shard database and a Redis of its own: the users the fuzz writes stay out of the other tests
    shard = migrate_database(pg, "persona_fuzz", "unde_shard")
    with redis_server(tmp_path / "redis") as redis_url:
        settings = PersonaAgentSettings.load(shard_0_db_url=shard, redis_url=redis_url)
        with service_client(create(settings)) as client:
            report = fuzz_app(client, "persona_agent", max_examples=40)
    print(report.summary())
    assert report.requests > 300
    assert report.findings == [], report.summary()
