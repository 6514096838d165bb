"""The fuzz run of context_agent (unde_testkit.fuzz): schemathesis from its OpenAPI plus hand-made
bodies against a real PostgreSQL (production schema) and Redis — no answer is a 5xx, none raises.
WeatherAPI is a port nothing listens on (the frame is served with weather absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from context_agent.app import create
from context_agent.settings import ContextAgentSettings
from unde_testkit.fuzz import fuzz_app
from unde_testkit.service_auth import service_client
from unde_testkit.testing import free_port, redis_server

pytestmark = pytest.mark.timeout(180)


def test_fuzz_finds_no_5xx(main_dsn: str, tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis_url:  # its own: the fuzz frames stay out of shared caches
        run(main_dsn, redis_url)


def run(main_dsn: str, redis_url: str) -> None:
    settings = ContextAgentSettings.load(
        weather_api_key="k",
        weather_api_url=f"http://127.0.0.1:{free_port()}/v1",
        production_db_url=main_dsn,
        redis_url=redis_url,
        weather_wait_ms=100,
        db_connect_timeout_s=1,
    )
    with service_client(create(settings)) as client:
        report = fuzz_app(client, "context_agent", max_examples=60)
    print(report.summary())
    assert report.requests > 150
    assert report.findings == [], report.summary()
