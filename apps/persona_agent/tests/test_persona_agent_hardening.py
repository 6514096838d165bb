"""Bad input refused at the edge (422 naming the field, never 500) against a real shard PostgreSQL
and Redis: a NUL byte in exchange_id (it used to reach the buffer, then every later flush of that
user failed in PostgreSQL with 503 for a day), impossible dates, out-of-range and non-finite numbers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from persona_agent.app import create
from persona_agent.settings import PersonaAgentSettings
from unde_testkit.service_auth import service_client

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def client(shard_dsn: str, redis_url: str) -> Iterator[TestClient]:
    settings = PersonaAgentSettings.load(
        shard_0_db_url=shard_dsn, redis_url=redis_url.rsplit("/", 1)[0] + "/13", persona_stale_after_s=0.2
    )
    with service_client(create(settings)) as c:
        yield c


def uid() -> str:
    return str(uuid.uuid4())


def locs(r: Any) -> list[list[Any]]:
    return [e["loc"] for e in r.json()["detail"]]


@pytest.mark.parametrize("bad", ["e\x00x", "e x", "e\n", "", "x" * 101, "ü"])
def test_unsafe_exchange_id_is_422_and_later_flushes_still_work(client: TestClient, bad: str) -> None:
    user = uid()
    fb = {"user_id": user, "signal_id": uid(), "exchange_id": bad, "signal_type": "humor_positive"}
    r = client.post("/persona/feedback", json=fb)
    assert r.status_code == 422 and ["body", "exchange_id"] in locs(r), r.text
    r = client.post("/persona/flush", json={"user_id": user, "exchange_id": bad})
    assert r.status_code == 422 and ["body", "exchange_id"] in locs(r), r.text
    r = client.post("/persona", json={"user_id": user, "exchange_id": bad})
    assert r.status_code == 422 and ["body", "exchange_id"] in locs(r), r.text
    # the user's next exchanges, and a flush after the refused one went stale, are served
    for exchange in ("e1", str(uuid.uuid4())):
        fb = {
            "user_id": user,
            "signal_id": uid(),
            "exchange_id": exchange,
            "signal_type": "humor_positive",
        }
        assert client.post("/persona/feedback", json=fb).status_code == 200
        time.sleep(0.25)  # past persona_stale_after_s: the flush also sweeps stale exchanges
        r = client.post("/persona/flush", json={"user_id": user, "exchange_id": exchange})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("date", ["2026-13-45", "2026-02-30", "0000-01-01", "2026-1-1"])
def test_impossible_life_event_date_is_422(client: TestClient, date: str) -> None:
    body = {"user_id": uid(), "user_knowledge_compact": {"life_events": [{"type": "birthday", "date": date}]}}
    r = client.post("/persona", json=body)
    assert r.status_code == 422, r.text
    assert ["body", "user_knowledge_compact", "life_events", 0, "date"] in locs(r)


def test_valid_life_event_date_is_served(client: TestClient) -> None:
    body = {
        "user_id": uid(),
        "user_knowledge_compact": {"life_events": [{"type": "birthday", "date": "2026-12-31"}]},
    }
    assert client.post("/persona", json=body).status_code == 200


@pytest.mark.parametrize("hours", ["-1", "169", "-1e400"])
def test_mall_closes_in_hours_out_of_range_is_422(client: TestClient, hours: str) -> None:
    frame = '{"environment": {"time_context": {"mall_closes_in_hours": HOURS}}}'.replace("HOURS", hours)
    raw = f'{{"user_id": "{uid()}", "context_frame": {frame}}}'
    r = client.post("/persona", content=raw.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "mall_closes_in_hours" in r.text or "overflows" in r.text


@pytest.mark.parametrize(
    ("token", "named"), [("NaN", "NaN"), ("-Infinity", "-Infinity"), ("1e400", "overflows")]
)
def test_non_finite_numbers_are_422(client: TestClient, token: str, named: str) -> None:
    raw = f'{{"user_id": "{uid()}", "mood_frame": {{"emotion": {{"valence": {token}}}}}}}'
    r = client.post("/persona", content=raw.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422 and named in r.text, r.text


def test_non_utf8_and_surrogate_bodies_are_4xx(client: TestClient) -> None:
    user = uid()
    r = client.post("/persona", content=b'{"user_id": "%s", "user_intent": "\xff"}' % user.encode())
    assert r.status_code == 400 and "UTF-8" in r.text
    r = client.post("/persona", content=b'{"user_id": "%s", "user_intent": "\\ud800"}' % user.encode())
    assert r.status_code == 422 and "surrogate" in r.text
