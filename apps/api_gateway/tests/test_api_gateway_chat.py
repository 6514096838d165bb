"""A full turn over HTTP: the gateway under uvicorn, a real orchestrator Celery worker on
dialogue_queue, the three agents as processes, PostgreSQL (shard + production), Redis and the
provider and PostHog simulators (``unde_testkit.gateway_testbed.GatewayBed``).

Sign-up → chat (JSON) → the pair is stored once, a retry with the same ids answers the same and
stores nothing more; chat with ``Accept: text/event-stream`` streams the orchestrator's sentences
before ``done`` and they add up to the stored reply; concurrent streams never mix; the turn's
analytics event carries the anonymised id and no content."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api_gateway.analytics import anonymous_id
from unde_testkit.gateway_testbed import GatewayBed
from unde_testkit.service_auth import monitoring_headers
from unde_testkit.testing import PostgresHandle

pytestmark = pytest.mark.timeout(300)

ASK = "Привет, подбери мне образ на свидание"


@pytest.fixture(scope="module")
def bed(pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayBed]:
    with GatewayBed(pg, redis_url, Path(tmp_path_factory.mktemp("gateway_bed"))) as bed:
        yield bed


def sign_up(bed: GatewayBed) -> tuple[uuid.UUID, dict[str, str]]:
    r = httpx.post(bed.url + "/api/v1/auth/device", json={"platform": "ios"}, timeout=10)
    assert r.status_code == 201, r.text
    body = r.json()
    return uuid.UUID(body["user_id"]), {"Authorization": f"Bearer {body['access_token']}"}


def new_turn(message: str = ASK) -> dict[str, Any]:
    return {
        "message": message,
        "user_message_id": str(uuid.uuid4()),
        "assistant_message_id": str(uuid.uuid4()),
        "location": {"lat": 25.1972, "lng": 55.2744, "mall_id": "dubai-mall"},
    }


def stored(bed: GatewayBed, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(bed.dialogue.shard_dsn) as conn:
        return conn.execute(
            "SELECT m.role, m.id, m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.user_id = %s ORDER BY m.created_at",
            (user_id,),
        ).fetchall()


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            fields = dict(line.split(": ", 1) for line in lines)
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_health_over_http(bed: GatewayBed) -> None:
    r = httpx.get(bed.url + "/health", headers=monitoring_headers(), timeout=10)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["checks"]) == ["production_db", "redis", "shard_0_db"]


def test_full_turn_json_stores_one_pair_and_a_retry_stores_nothing(bed: GatewayBed) -> None:
    user_id, headers = sign_up(bed)
    turn = new_turn()
    r = httpx.post(bed.url + "/api/v1/chat", json=turn, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["text"] and answer["failed"] is False
    assert answer["voice_params"] and "avatar_state" in answer and "render_hints" in answer
    assert answer["user_message_id"] == turn["user_message_id"]
    assert answer["assistant_message_id"] == turn["assistant_message_id"]
    rows = stored(bed, user_id)
    assert [(role, str(mid)) for role, mid, _ in rows] == [
        ("user", turn["user_message_id"]),
        ("assistant", turn["assistant_message_id"]),
    ]
    assert rows[0][2] == ASK and rows[1][2] == answer["text"]
    again = httpx.post(bed.url + "/api/v1/chat", json=turn, headers=headers, timeout=60)
    assert again.status_code == 200 and again.json() == answer
    assert len(stored(bed, user_id)) == 2
    # the conversation the orchestrator made is the user's: a second turn names it
    follow = {**new_turn("А что-нибудь попроще?"), "conversation_id": answer["conversation_id"]}  # noqa: RUF001
    second = httpx.post(bed.url + "/api/v1/chat", json=follow, headers=headers, timeout=60)
    assert second.status_code == 200, second.text
    assert len(stored(bed, user_id)) == 4


def test_full_turn_sse_streams_sentences_that_add_up_to_the_reply(bed: GatewayBed) -> None:
    user_id, headers = sign_up(bed)
    turn = new_turn("What should I wear to a gallery opening tonight?")
    with httpx.stream(
        "POST",
        bed.url + "/api/v1/chat",
        json=turn,
        headers={**headers, "Accept": "text/event-stream"},
        timeout=60,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    events = sse_events(body)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done", body
    assert "error" not in kinds, body
    done = events[-1][1]
    assert done["assistant_message_id"] == turn["assistant_message_id"] and done["text"]
    # the sentences after the last reset are the reply, in order
    last_reset = max((i for i, k in enumerate(kinds) if k == "reset"), default=-1)
    sentences = [data for kind, data in events[last_reset + 1 : -1] if kind == "sentence"]
    assert sentences, body
    assert [s["seq"] for s in sentences] == sorted(s["seq"] for s in sentences)
    assert "".join(s["text"] for s in sentences) == done["text"]
    assert stored(bed, user_id)[-1][2] == done["text"]


def test_the_turn_is_captured_anonymised_without_content(bed: GatewayBed) -> None:
    user_id, headers = sign_up(bed)
    secret = "My sister Amira loves silk scarves"
    r = httpx.post(bed.url + "/api/v1/chat", json=new_turn(secret), headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    anon = anonymous_id(user_id, bed.settings().analytics_id_key.get_secret_value())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        mine = [e for e in bed.posthog.events_named("user_message_sent") if e["distinct_id"] == anon]
        if mine:
            break
        time.sleep(0.05)
    assert mine, bed.posthog.events
    event = mine[0]
    assert event["properties"]["input_type"] == "text" and event["properties"]["answered"] is True
    assert event["properties"]["in_mall"] is True
    text = json.dumps(bed.posthog.events)
    assert "Amira" not in text and str(user_id) not in text
    signups = [e for e in bed.posthog.events_named("onboarding_step") if e["distinct_id"] == anon]
    assert signups and signups[0]["properties"]["step"] == "device_signup"


def test_concurrent_streams_each_get_their_own_answer(bed: GatewayBed) -> None:
    """Twelve users chatting at once, half streaming: every stream's sentences add up to its own
    reply, every answer names its own ids, each user has exactly one stored pair."""
    users = [sign_up(bed) for _ in range(12)]
    turns = [new_turn(f"Outfit idea number {n} for a rooftop dinner?") for n in range(12)]

    async def one(n: int, client: httpx.AsyncClient) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        _, headers = users[n]
        if n % 2:
            r = await client.post(bed.url + "/api/v1/chat", json=turns[n], headers=headers)
            assert r.status_code == 200, r.text
            return n, r.json(), []
        sse = {**headers, "Accept": "text/event-stream"}
        async with client.stream("POST", bed.url + "/api/v1/chat", json=turns[n], headers=sse) as r:
            assert r.status_code == 200
            text = "".join([chunk async for chunk in r.aiter_text()])
        events = sse_events(text)
        assert events[-1][0] == "done", text
        last_reset = max((i for i, (k, _) in enumerate(events) if k == "reset"), default=-1)
        return n, events[-1][1], [d for k, d in events[last_reset + 1 : -1] if k == "sentence"]

    async def run() -> list[tuple[int, dict[str, Any], list[dict[str, Any]]]]:
        async with httpx.AsyncClient(timeout=90) as client:
            return await asyncio.gather(*(one(n, client) for n in range(12)))

    for n, answer, sentences in asyncio.run(run()):
        assert answer["assistant_message_id"] == turns[n]["assistant_message_id"]
        assert answer["user_message_id"] == turns[n]["user_message_id"]
        if n % 2 == 0:
            assert "".join(s["text"] for s in sentences) == answer["text"]
        user_id = users[n][0]
        assert [row[0] for row in stored(bed, user_id)] == ["user", "assistant"]
