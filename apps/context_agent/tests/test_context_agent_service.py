"""POST /context with a WeatherAPI simulator on loopback (strict like the real API; faults:
quota, disabled key, internal error, 502, slow, malformed), a real Redis and the production schema
(unde_main ``events``) in a real PostgreSQL; the WeatherAPI contract fixtures."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from context_agent.app import create
from context_agent.geo import directory
from context_agent.settings import ContextAgentSettings
from context_agent.sun import sunset_utc
from context_agent.time_context import closes_in_hours, part_of_day
from context_agent.weather_client import WeatherApiError, WeatherClient, parse_forecast
from unde_testkit.service_auth import service_client
from unde_testkit.testing import LoopbackServer, free_port
from unde_testkit.weather_simulator import FORECAST, WEATHER_KEY, WeatherSimulator

DHM = {"lat": 25.1026, "lng": 55.2435, "mall_id": "dubai-hills-mall"}
PREFS = {
    "favorite_brands": ["Zara", "Massimo Dutti"],
    "allergies": ["gluten"],
    "interests": ["korean_thrillers"],
    "cultural_sensitivity_level": "medium",
}


@pytest.fixture(scope="module")
def weather() -> Iterator[tuple[WeatherSimulator, str]]:
    sim = WeatherSimulator()
    with LoopbackServer(sim.app) as server:
        yield sim, server.url + "/v1"


@pytest.fixture(scope="module")
def events_db(main_dsn: str) -> str:
    with psycopg.connect(main_dsn) as conn:
        conn.execute("DELETE FROM events")
        rows = [
            (
                "dubai-hills-mall",
                "sale",
                "Spring sale",
                "Zara",
                "Zara",
                "2026-03-01",
                "2026-03-10",
                {"discount": "30%"},
            ),
            (
                "dubai-hills-mall",
                "premiere",
                "New Korean thriller",
                "Reel Cinemas",
                None,
                "2026-03-05 10:00+00",
                "2026-03-05 22:00+00",
                {"tags": ["korean", "thriller"]},
            ),
            (
                "dubai-hills-mall",
                "food",
                "Gluten bakery festival",
                None,
                None,
                "2026-03-04",
                "2026-03-08",
                {},
            ),
            (
                "dubai-hills-mall",
                "sale",
                "Old sale",
                "Zara",
                "Zara",
                "2026-02-01",
                "2026-02-10",
                {"discount": "50%"},
            ),
            (
                "the-dubai-mall",
                "sale",
                "Other mall",
                "Zara",
                "Zara",
                "2026-03-01",
                "2026-03-10",
                {"discount": "20%"},
            ),
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO events (mall_id, kind, title, store, brand, starts_at, ends_at, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(*row[:7], Jsonb(row[7])) for row in rows],
            )
    return main_dsn


def make_client(weather_url: str, dsn: str, redis_url: str, **extra: Any) -> TestClient:
    values: dict[str, Any] = {
        "weather_api_key": WEATHER_KEY,
        "weather_api_url": weather_url,
        "production_db_url": dsn,
        "redis_url": redis_url.rsplit("/", 1)[0] + f"/{extra.pop('redis_db', 15)}",
        "weather_wait_ms": 300,
        "events_wait_ms": 1000,
        "db_connect_timeout_s": 1,
    }
    settings = ContextAgentSettings.load(**{**values, **extra})
    return service_client(create(settings))


@pytest.fixture(scope="module")
def client(weather: tuple[WeatherSimulator, str], events_db: str, redis_url: str) -> Iterator[TestClient]:
    with make_client(weather[1], events_db, redis_url) as c:
        yield c


def post(c: TestClient, at: str, **body: Any) -> dict[str, Any]:
    r = c.post(
        "/context", json={"user_id": str(uuid.uuid4()), **DHM, "compact_preferences": PREFS, "at": at, **body}
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_full_frame_in_ramadan(client: TestClient, weather: tuple[WeatherSimulator, str]) -> None:
    weather[0].mode = "ok"
    frame = post(client, "2026-03-05T15:30:00+04:00")
    assert frame["timestamp"] == "2026-03-05T15:30:00+04:00"
    assert frame["location"] == {
        "type": "mall",
        "mall_id": "dubai-hills-mall",
        "mall_name": "Dubai Hills Mall",
        "near_store": "zara-ground-floor",
        "floor": 1,
    }
    assert frame["environment"]["weather"] == {
        "temp_c": 28,
        "feels_like_c": 31,
        "humidity": 65,
        "condition": "clear",
        "sunset": "18:23",
    }
    assert weather[0].last_query["key"] == "wk-123" and weather[0].last_query["q"] == "25.100,55.240"
    assert frame["environment"]["time_context"] == {
        "day_of_week": "thursday",
        "part_of_day": "afternoon",
        "mall_closes_in_hours": 8.5,
        "is_rush_hour": False,
    }
    sunset = sunset_utc(date(2026, 3, 5), 25.1026, 55.2435)
    assert sunset is not None
    assert frame["cultural"] == {
        "sensitivity_level": "medium",
        "active_period": "ramadan",
        "next_meal_break": sunset.astimezone(ZoneInfo("Asia/Dubai")).strftime("%H:%M"),
        "is_pre_meal_break": False,
        "nearby_holidays": [],
    }
    assert "iftar_time" not in frame["cultural"]
    assert frame["opportunities"] == [
        {"store": "Zara", "type": "sale", "discount": "30%", "relevance_reason": "user_favorite_brand"},
        {
            "store": "Reel Cinemas",
            "type": "premiere",
            "title": "New Korean thriller",
            "relevance_reason": "user_loves_korean_thrillers",
        },
    ]
    assert frame["data_status"] == {"weather": "fresh", "events": "fresh", "cultural": "static"}
    hits = weather[0].hits
    again = post(client, "2026-03-05T15:31:00+04:00")
    assert again["data_status"] == {"weather": "cached", "events": "cached", "cultural": "static"}
    assert weather[0].hits == hits


def test_sensitivity_levels_and_meal_break(client: TestClient) -> None:
    high = post(
        client,
        "2026-03-05T17:30:00+04:00",
        compact_preferences={**PREFS, "cultural_sensitivity_level": "high"},
    )
    assert high["cultural"]["iftar_time"] == high["cultural"]["next_meal_break"]
    assert high["cultural"]["is_pre_meal_break"] is True and high["cultural"]["active_period"] == "ramadan"
    low = post(
        client,
        "2026-03-05T12:00:00+04:00",
        compact_preferences={**PREFS, "cultural_sensitivity_level": "low"},
    )
    assert low["cultural"]["active_period"] is None and "iftar_time" not in low["cultural"]
    assert low["cultural"]["constraints"] == ["no_daytime_food_suggestions"]
    evening = post(client, "2026-03-05T21:00:00+04:00")
    assert evening["cultural"]["is_pre_meal_break"] is False
    assert evening["environment"]["time_context"]["part_of_day"] == "evening"


def test_holidays_by_country(client: TestClient) -> None:
    uae = post(
        client,
        "2026-03-17T12:00:00+04:00",
        compact_preferences={**PREFS, "cultural_sensitivity_level": "high"},
    )
    assert [(h["period"], h["days_until"]) for h in uae["cultural"]["nearby_holidays"]] == [
        ("eid_al_fitr", 3),
        ("eid_al_fitr", 4),
        ("eid_al_fitr", 5),
    ]
    assert uae["cultural"]["nearby_holidays"][0]["name"] == "Eid al-Fitr"
    kz = post(
        client,
        "2026-03-19T12:00:00+05:00",
        lat=43.2019,
        lng=76.8917,
        mall_id=None,
        compact_preferences={**PREFS, "cultural_sensitivity_level": "medium"},
    )
    assert (
        kz["location"]["mall_id"] == "mega-alma-ata" and kz["location"]["near_store"] == "zara-mega-alma-ata"
    )
    periods = [h["period"] for h in kz["cultural"]["nearby_holidays"]]
    assert periods == ["eid_al_fitr", "nauryz", "nauryz", "nauryz"]
    assert all("name" not in h for h in kz["cultural"]["nearby_holidays"])


def test_outside_any_mall(client: TestClient) -> None:
    frame = post(client, "2026-07-01T09:00:00+04:00", lat=24.45, lng=54.38, mall_id=None)
    assert frame["location"]["type"] == "outside" and frame["location"]["mall_id"] is None
    assert frame["opportunities"] == [] and frame["data_status"]["events"] == "absent"
    assert frame["cultural"]["active_period"] is None


@pytest.mark.parametrize(
    "fault", ["quota_exceeded", "key_disabled", "internal_error", "bad_gateway", "malformed"]
)
def test_weather_provider_down_frame_still_returned(
    weather: tuple[WeatherSimulator, str], events_db: str, redis_url: str, fault: str
) -> None:
    weather[0].mode = fault
    with make_client(weather[1], events_db, redis_url, redis_db=3, weather_cache_ttl=0) as c:
        r = c.post("/context", json={"user_id": str(uuid.uuid4()), "lat": 25.2, "lng": 55.28})
    assert r.status_code == 200
    frame = r.json()
    assert frame["environment"]["weather"] is None and frame["data_status"]["weather"] == "absent"
    assert "weather" in frame["data_errors"]
    assert frame["environment"]["time_context"]["part_of_day"]


def test_stale_weather_served_when_provider_fails(
    weather: tuple[WeatherSimulator, str], events_db: str, redis_url: str
) -> None:
    weather[0].mode = "ok"
    with make_client(weather[1], events_db, redis_url, redis_db=4, weather_cache_ttl=0) as c:
        body = {"user_id": str(uuid.uuid4()), "lat": 25.08, "lng": 55.14}
        assert c.post("/context", json=body).json()["data_status"]["weather"] == "fresh"
        weather[0].mode = "quota_exceeded"
        frame = c.post("/context", json=body).json()
    assert frame["data_status"]["weather"] == "stale" and frame["environment"]["weather"]["temp_c"] == 28
    assert "monthly call quota exceeded (error 2007" in frame["data_errors"]["weather"]


def test_slow_weather_does_not_block_and_fills_the_cache(
    weather: tuple[WeatherSimulator, str], events_db: str, redis_url: str
) -> None:
    weather[0].mode = "slow"
    with make_client(weather[1], events_db, redis_url, redis_db=5, weather_wait_ms=50) as c:
        body = {"user_id": str(uuid.uuid4()), "lat": 25.12, "lng": 55.2}
        first = c.post("/context", json=body).json()
        assert first["data_status"]["weather"] == "absent"
        deadline = time.monotonic() + 5
        status = "absent"
        while status != "cached" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = c.post("/context", json=body).json()["data_status"]["weather"]
    assert status == "cached"


def test_database_down_events_absent(weather: tuple[WeatherSimulator, str], redis_url: str) -> None:
    weather[0].mode = "ok"
    dsn = f"postgresql://readonly:pw@127.0.0.1:{free_port()}/unde_main"
    with make_client(weather[1], dsn, redis_url, redis_db=6, events_wait_ms=300) as c:
        r = c.post(
            "/context",
            json={
                "user_id": str(uuid.uuid4()),
                **DHM,
                "compact_preferences": PREFS,
                "at": "2026-03-05T12:00:00Z",
            },
        )
    assert r.status_code == 200
    frame = r.json()
    assert frame["data_status"]["events"] == "absent" and frame["opportunities"] == []
    assert (
        frame["location"]["mall_id"] == "dubai-hills-mall" and frame["cultural"]["active_period"] == "ramadan"
    )


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"lat": 1, "lng": 2}, ["body", "user_id"]),
        ({"user_id": "u", "lat": 1, "lng": 2}, ["body", "user_id"]),
        ({"user_id": str(uuid.uuid4()), "lng": 2}, ["body", "lat"]),
        ({"user_id": str(uuid.uuid4()), "lat": 200, "lng": 2}, ["body", "lat"]),
        ({"user_id": str(uuid.uuid4()), "lat": "north", "lng": 2}, ["body", "lat"]),
        (
            {
                "user_id": str(uuid.uuid4()),
                "lat": 1,
                "lng": 2,
                "compact_preferences": {"cultural_sensitivity_level": "max"},
            },
            ["body", "compact_preferences", "cultural_sensitivity_level"],
        ),
        (
            {
                "user_id": str(uuid.uuid4()),
                "lat": 1,
                "lng": 2,
                "compact_preferences": {"favorite_brands": "Zara"},
            },
            ["body", "compact_preferences", "favorite_brands"],
        ),
        ({"user_id": str(uuid.uuid4()), "lat": 1, "lng": 2, "at": "2026-03-05T12:00:00"}, ["body", "at"]),
    ],
)
def test_bad_input_is_422_naming_the_field(client: TestClient, body: dict[str, Any], loc: list[str]) -> None:
    r = client.post("/context", json=body)
    assert r.status_code == 422
    assert loc in [d["loc"] for d in r.json()["detail"]]


def test_time_rules_and_parsing() -> None:
    mall = directory()["the-dubai-mall"]
    tz = ZoneInfo("Asia/Dubai")
    assert closes_in_hours(mall, datetime(2026, 3, 6, 23, 30, tzinfo=tz)) == 1.5  # Friday: until 01:00
    assert (
        closes_in_hours(mall, datetime(2026, 3, 7, 0, 30, tzinfo=tz)) == 0.5
    )  # Friday's hours, after midnight
    assert closes_in_hours(mall, datetime(2026, 3, 9, 0, 30, tzinfo=tz)) == 0.0  # Sunday closed at 24:00
    assert closes_in_hours(mall, datetime(2026, 3, 9, 9, 0, tzinfo=tz)) == 0.0
    assert [part_of_day(datetime(2026, 1, 1, h).time()) for h in (4, 6, 13, 18, 23)] == [
        "night",
        "morning",
        "afternoon",
        "evening",
        "night",
    ]
    with pytest.raises(ValueError, match="weatherapi"):
        parse_forecast({"current": {"temp_c": 1}})
    assert parse_forecast({**FORECAST, "forecast": {}})["sunset"] is None


# ----------------------------------------------------------------------------- WeatherAPI contract

CONTRACTS = json.loads((Path(__file__).parent / "contracts" / "weatherapi_forecast.json").read_text())
#: what httpx itself sends with every request; anything beyond it must be in the fixture
HTTPX_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent"}


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c["name"] for c in CONTRACTS])
def test_weatherapi_contract(weather: tuple[WeatherSimulator, str], contract: dict[str, Any]) -> None:
    sim, url = weather
    sim.mode, sim.fixture_response = "fixture", contract["response"]
    before = len(sim.requests)

    async def call() -> dict[str, Any]:
        client = WeatherClient(url, SecretStr(WEATHER_KEY), timeout_s=2)
        try:
            return await client.current(25.1968, 55.2744)
        finally:
            await client.aclose()

    if "error" in contract:
        with pytest.raises(WeatherApiError) as info:
            asyncio.run(call())
        assert (info.value.code, str(info.value)) == (contract["error"]["code"], contract["error"]["message"])
        assert info.value.status == contract["response"]["status"]
    else:
        assert asyncio.run(call()) == contract["parsed"]
    sent = sim.requests[before:]
    assert len(sent) == 1  # a documented 4xx is never retried
    expected = contract["request"]
    assert {k: sent[0][k] for k in ("method", "path", "query", "json")} == {
        k: expected[k] for k in ("method", "path", "query", "json")
    }
    extra = {k: v for k, v in sent[0]["headers"].items() if k not in HTTPX_HEADERS}
    assert extra == expected["headers"]


def test_weatherapi_quota_pauses_calls_without_retrying(weather: tuple[WeatherSimulator, str]) -> None:
    sim, url = weather
    sim.mode = "quota_exceeded"

    async def main() -> None:
        client = WeatherClient(url, SecretStr(WEATHER_KEY), timeout_s=2, key_pause_s=60)
        try:
            hits = sim.hits
            with pytest.raises(WeatherApiError) as info:
                await client.current(25.2, 55.28)
            assert info.value.code == 2007 and info.value.status == 403 and sim.hits == hits + 1
            with pytest.raises(WeatherApiError, match=r"monthly call quota exceeded .* calls paused for"):
                await client.current(25.3, 55.3)
            assert sim.hits == hits + 1  # paused: nothing sent
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("key", "base", "code", "status"),
    [("wrong", "/v1", 2006, 401), (WEATHER_KEY, "/v2", 1005, 400)],
)
def test_weatherapi_simulator_rejects_what_the_api_rejects(
    weather: tuple[WeatherSimulator, str], key: str, base: str, code: int, status: int
) -> None:
    sim, url = weather
    sim.mode = "ok"

    async def main() -> None:
        client = WeatherClient(url.removesuffix("/v1") + base, SecretStr(key), timeout_s=2)
        try:
            with pytest.raises(WeatherApiError) as info:
                await client.current(25.2, 55.28)
            assert (info.value.code, info.value.status) == (code, status)
        finally:
            await client.aclose()

    asyncio.run(main())
