"""Weather is cached per mall or per coarse cell, not per 0.01° point: every distinct point asked
of WeatherAPI is a paid call. Counted at the WeatherAPI simulator on loopback, with the real
Redis cache the workers share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from context_agent.app import create
from context_agent.settings import ContextAgentSettings
from context_agent.weather_client import weather_point
from unde_testkit.service_auth import service_client
from unde_testkit.testing import LoopbackServer
from unde_testkit.weather_simulator import WEATHER_KEY, WeatherSimulator

REDIS_DB = 8


@pytest.fixture
def weather() -> Iterator[tuple[WeatherSimulator, str]]:
    sim = WeatherSimulator()
    with LoopbackServer(sim.app) as server:
        yield sim, server.url + "/v1"


@pytest.fixture
def cache_db(redis_url: str) -> str:
    url = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    with redis.Redis.from_url(url) as r:
        r.flushdb()
    return url


def app(weather_url: str, dsn: str, redis_url: str, **extra: Any) -> TestClient:
    settings = ContextAgentSettings.load(
        weather_api_key=WEATHER_KEY,
        weather_api_url=weather_url,
        production_db_url=dsn,
        redis_url=redis_url,
        weather_wait_ms=1000,
        **extra,
    )
    return service_client(create(settings))


def frame(client: TestClient, **where: Any) -> dict[str, Any]:
    answer = client.post("/context", json={"user_id": str(uuid.uuid4()), **where})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_two_points_in_one_cell_make_one_call(
    weather: tuple[WeatherSimulator, str], main_dsn: str, cache_db: str
) -> None:
    sim, url = weather
    with app(url, main_dsn, cache_db) as client:
        # outside every mall, 0.01°-distinct points ~4 km apart in one 0.1° cell
        first = frame(client, lat=24.41, lng=54.38)
        second = frame(client, lat=24.44, lng=54.36)
        assert sim.hits == 1
        assert first["data_status"]["weather"] == "fresh" and second["data_status"]["weather"] == "cached"
        assert second["environment"]["weather"] == first["environment"]["weather"]
        assert sim.last_query["q"] == "24.400,54.400"  # the cell's centre is what is asked
        frame(client, lat=24.62, lng=54.38)  # the next cell north: its own call
        assert sim.hits == 2
    with app(url, main_dsn, cache_db) as other_worker:  # another process shares the Redis copy
        assert frame(other_worker, lat=24.43, lng=54.41)["data_status"]["weather"] == "cached"
    assert sim.hits == 2


def test_one_call_per_mall(weather: tuple[WeatherSimulator, str], main_dsn: str, cache_db: str) -> None:
    sim, url = weather
    with app(url, main_dsn, cache_db) as client:
        entrance = frame(client, lat=25.1026, lng=55.2435, mall_id="dubai-hills-mall")
        far_wing = frame(client, lat=25.1004, lng=55.2461, mall_id="dubai-hills-mall")
        unnamed = frame(client, lat=25.1012, lng=55.2449)  # inside its radius, no mall_id given
        assert entrance["location"]["mall_id"] == far_wing["location"]["mall_id"] == "dubai-hills-mall"
        assert unnamed["location"]["mall_id"] == "dubai-hills-mall"
        assert sim.hits == 1 and sim.last_query["q"] == "25.100,55.240"
        frame(client, lat=25.1972, lng=55.2796, mall_id="the-dubai-mall")
        assert sim.hits == 2


def test_the_grid_is_a_setting(weather: tuple[WeatherSimulator, str], main_dsn: str, cache_db: str) -> None:
    sim, url = weather
    with app(url, main_dsn, cache_db, weather_grid_deg=0.5) as client:
        frame(client, lat=24.30, lng=54.10)
        frame(client, lat=24.60, lng=54.20)  # 33 km apart, one 0.5° cell
        assert sim.hits == 1 and sim.last_query["q"] == "24.500,54.000"


def test_weather_points() -> None:
    a = weather_point(25.2049, 55.2708, grid_deg=0.1)
    assert (a.key, a.lat, a.lng) == ("cell:0.1:252:553", 25.2, 55.3)
    assert weather_point(25.1951, 55.2501, grid_deg=0.1).key == a.key
    assert weather_point(25.2501, 55.2708, grid_deg=0.1).key != a.key
    edge = weather_point(-89.99, 179.99, grid_deg=0.1)
    assert (edge.lat, edge.lng) == (-90.0, 180.0)
    mall = weather_point(1.0, 2.0, grid_deg=0.1, mall=("dubai-hills-mall", 25.1025, 55.2438))
    assert (mall.key, mall.lat, mall.lng) == ("mall:dubai-hills-mall", 25.1, 55.24)
