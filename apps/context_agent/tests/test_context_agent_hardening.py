"""POST /context with bad input against a real PostgreSQL (production schema) and Redis: ``at``
near year 1 or 9999 (it used to overflow in the time-zone arithmetic: 500), non-finite
coordinates, unsafe mall ids — each a 422 naming the field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from context_agent.app import create
from context_agent.settings import ContextAgentSettings
from unde_testkit.service_auth import service_client
from unde_testkit.testing import free_port, redis_server

pytestmark = pytest.mark.timeout(60)

DHM = {"lat": 25.1026, "lng": 55.2435, "mall_id": "dubai-hills-mall"}


@pytest.fixture(scope="module")
def client(main_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # a Redis of its own: the frames these odd moments produce must not sit in the shared caches
    with redis_server(tmp_path_factory.mktemp("redis")) as redis_url, make(main_dsn, redis_url) as c:
        yield c


def make(main_dsn: str, redis_url: str) -> TestClient:
    settings = ContextAgentSettings.load(
        weather_api_key="k",
        weather_api_url=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens: weather is absent
        production_db_url=main_dsn,
        redis_url=redis_url,
        weather_wait_ms=200,
        db_connect_timeout_s=1,
    )
    return service_client(create(settings))


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:30:00Z",
        "9999-12-31T23:59:59-12:00",
        "9999-12-31T23:00:00Z",
        "1899-12-31T23:00:00Z",
        "2201-01-01T00:00:00Z",
    ],
)
def test_at_out_of_range_is_422(client: TestClient, at: str) -> None:
    r = client.post("/context", json={"user_id": str(uuid.uuid4()), **DHM, "at": at})
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "at"]]


@pytest.mark.parametrize("at", ["1900-01-02T00:00:00Z", "2200-12-30T12:00:00+04:00", "2026-03-05T12:00:00Z"])
def test_at_inside_range_is_served(client: TestClient, at: str) -> None:
    r = client.post("/context", json={"user_id": str(uuid.uuid4()), **DHM, "at": at})
    assert r.status_code == 200, r.text
    assert r.json()["location"]["mall_id"] == "dubai-hills-mall"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"user_id": "%s", "lat": NaN, "lng": 55.2}', "NaN"),
        ('{"user_id": "%s", "lat": 25.1, "lng": -1e400}', "overflows"),
        ('{"user_id": "%s", "lat": 25.1, "lng": 55.2, "mall_id": "a\\u0000b"}', "mall_id"),
        ('{"user_id": "%s", "lat": 25.1, "lng": 55.2, "mall_id": "\\udc00"}', "surrogate"),
    ],
)
def test_bad_bodies_are_422(client: TestClient, raw: str, field: str) -> None:
    r = client.post(
        "/context", content=(raw % uuid.uuid4()).encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and field in r.text, r.text
