"""The account routes over HTTP on the whole gateway (``python -m api_gateway`` under uvicorn) with the
real orchestrator worker behind it (:class:`unde_testkit.gateway_testbed.GatewayBed`: PostgreSQL shard
and production, Redis, the agents, provider stand-ins, an S3 server).

The failover gap is made as it happens: the app chats through the gateway and keeps its pairs, the
newest ten pairs vanish from the shard (the WAL the new primary never received), and the app
replays them at the spec's one pair per second."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from unde_testkit.gateway_testbed import GatewayBed
from unde_testkit.testing import PostgresHandle, S3Handle

pytestmark = pytest.mark.timeout(300)

BUCKET = "unde-user-media"


@pytest.fixture(scope="module")
def bed(
    pg: PostgresHandle, redis_url: str, s3: S3Handle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayBed]:
    client = s3.client()
    if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)
    # chats are not what is limited here; replay keeps the spec's one pair per second
    rates = {"chat": {"rate": 100, "burst": 100}}
    with GatewayBed(
        pg,
        redis_url,
        tmp_path_factory.mktemp("gw_account"),
        s3=s3,
        gateway_env={"RATE_LIMITS": json.dumps(rates)},
    ) as bed:
        yield bed


@pytest.fixture
def http(bed: GatewayBed) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bed.url + "/api/v1", timeout=60) as client:
        yield client


def shard(bed: GatewayBed) -> psycopg.Connection[Any]:
    return psycopg.connect(bed.dialogue.shard_dsn, autocommit=True)


def rows_of(bed: GatewayBed, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with shard(bed) as conn:
        return conn.execute(
            "SELECT m.id, m.role, m.content, m.is_forgotten FROM messages m"
            " JOIN conversations c ON c.id = m.conversation_id WHERE c.user_id = %s"
            " ORDER BY m.created_at, m.role DESC",
            (user_id,),
        ).fetchall()


def chat(http: httpx.Client, headers: dict[str, str], message: str) -> dict[str, Any]:
    """One turn as the app makes it; returns the pair as the app keeps it."""
    sent_at = dt.datetime.now(dt.UTC)
    ids = {"user_message_id": str(uuid.uuid4()), "assistant_message_id": str(uuid.uuid4())}
    r = http.post("/chat", json={"message": message, **ids}, headers=headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    return {
        "conversation_id": answer["conversation_id"],
        "pair": {
            "user_message": {
                "id": ids["user_message_id"],
                "text": message,
                "created_at": sent_at.isoformat(),
            },
            "assistant_message": {
                "id": ids["assistant_message_id"],
                "text": answer["text"],
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
                "voice_params": answer.get("voice_params"),
            },
        },
    }


def ids_of(pairs: list[dict[str, Any]]) -> list[str]:
    return [p[k]["id"] for p in pairs for k in ("user_message", "assistant_message")]


def user(bed: GatewayBed) -> tuple[uuid.UUID, dict[str, str]]:
    user_id = bed.seed_user()
    return user_id, bed.headers(user_id)


def test_a_ten_pair_gap_is_replayed_once_at_one_pair_per_second(bed: GatewayBed, http: httpx.Client) -> None:
    user_id, headers = user(bed)
    turns = [chat(http, headers, f"What goes with white sneakers, idea {i}?") for i in range(12)]
    conversation_id = turns[0]["conversation_id"]
    pairs = [t["pair"] for t in turns]
    gap, confirmed = pairs[2:], ids_of(pairs[:2])
    with shard(bed) as conn:
        conn.execute("DELETE FROM messages WHERE id = ANY(%s::uuid[])", (ids_of(gap),))
    assert len(rows_of(bed, user_id)) == 4
    body = {"conversation_id": conversation_id, "unconfirmed": gap, "recent_confirmed_ids": confirmed}

    first = http.post("/verify-and-replay", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert sorted(first.json()["inserted_ids"]) == sorted(ids_of(gap))
    assert sorted(first.json()["present_ids"]) == sorted(confirmed)
    assert first.json()["missing_confirmed_ids"] == []
    restored = rows_of(bed, user_id)
    assert [str(r[0]) for r in restored] == ids_of(pairs)
    assert [r[2] for r in restored[4:]] == [m["text"] for p in gap for m in p.values()]

    too_soon = http.post("/verify-and-replay", json=body, headers=headers)
    assert too_soon.status_code == 429 and int(too_soon.headers["Retry-After"]) >= 1
    time.sleep(int(too_soon.headers["Retry-After"]))  # as the app does
    second = http.post("/verify-and-replay", json=body, headers=headers)
    assert second.status_code == 200, second.text
    assert second.json()["inserted_ids"] == []
    assert sorted(second.json()["present_ids"]) == sorted(ids_of(pairs))
    assert len(rows_of(bed, user_id)) == 24


def test_replay_into_another_users_conversation_is_refused(bed: GatewayBed, http: httpx.Client) -> None:
    owner, owner_headers = user(bed)
    theirs = chat(http, owner_headers, "Hello there")["conversation_id"]
    intruder, headers = user(bed)
    now = dt.datetime.now(dt.UTC).isoformat()
    pair = {
        "user_message": {"id": str(uuid.uuid4()), "text": "planted", "created_at": now},
        "assistant_message": {"id": str(uuid.uuid4()), "text": "planted reply", "created_at": now},
    }
    r = http.post("/verify-and-replay", json={"conversation_id": theirs, "pairs": [pair]}, headers=headers)
    assert r.status_code == 403 and r.json()["error"] == "conversation_not_owned"
    assert len(rows_of(bed, owner)) == 2 and rows_of(bed, intruder) == []


def test_replay_input_is_checked_before_anything_is_sent(bed: GatewayBed, http: httpx.Client) -> None:
    _, headers = user(bed)
    now = dt.datetime.now(dt.UTC).isoformat()

    def pair() -> dict[str, Any]:
        return {
            "user_message": {"id": str(uuid.uuid4()), "text": "hi", "created_at": now},
            "assistant_message": {"id": str(uuid.uuid4()), "text": "hello", "created_at": now},
        }

    conversation_id = str(uuid.uuid4())
    many = http.post(
        "/verify-and-replay",
        json={"conversation_id": conversation_id, "pairs": [pair() for _ in range(21)]},
        headers=headers,
    )
    assert many.status_code == 422 and many.json()["error"] == "too_many_pairs"
    naive = pair()
    naive["user_message"]["created_at"] = "2026-01-01T10:00:00"
    r = http.post(
        "/verify-and-replay", json={"conversation_id": conversation_id, "pairs": [naive]}, headers=headers
    )
    assert r.status_code == 422 and "created_at" in json.dumps(r.json()["detail"])
    anonymous = http.post("/verify-and-replay", json={"conversation_id": conversation_id, "pairs": []})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")


def test_forget_this_then_hard_delete(bed: GatewayBed, http: httpx.Client) -> None:
    user_id, headers = user(bed)
    turn = chat(http, headers, "My secret project is called Flamingo")
    chat(http, headers, "And I like linen shirts")
    message_id = turn["pair"]["user_message"]["id"]

    soft = http.post("/forget", json={"message_id": message_id}, headers=headers)
    assert soft.status_code == 200, soft.text
    assert soft.json()["found"] and soft.json()["message_ids"] == [message_id]
    rows = {str(r[0]): r for r in rows_of(bed, user_id)}
    assert rows[message_id][3] is True and rows[message_id][2] == "My secret project is called Flamingo"
    assert http.post("/forget", json={"message_id": message_id}, headers=headers).json()["changed"] is False

    topic = http.post("/forget", json={"topic": "linen shirts"}, headers=headers)
    assert topic.status_code == 200 and len(topic.json()["message_ids"]) == 1

    hard = http.post("/forget/hard", json={"message_id": message_id}, headers=headers)
    assert hard.status_code == 200 and hard.json()["changed"] is True
    assert {str(r[0]): r for r in rows_of(bed, user_id)}[message_id][2] == "[deleted]"

    unknown = http.post("/forget", json={"message_id": str(uuid.uuid4())}, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"] == "message_not_found"
    both = http.post("/forget", json={"message_id": message_id, "topic": "x y"}, headers=headers)
    assert both.status_code == 422


def test_another_user_cannot_forget_my_message(bed: GatewayBed, http: httpx.Client) -> None:
    owner, owner_headers = user(bed)
    message_id = chat(http, owner_headers, "Only mine")["pair"]["user_message"]["id"]
    _, headers = user(bed)
    for path in ("/forget", "/forget/hard"):
        r = http.post(path, json={"message_id": message_id}, headers=headers)
        assert r.status_code == 404, r.text
    assert rows_of(bed, owner)[0][2] == "Only mine"


def test_profile_shows_what_the_avatar_knows(bed: GatewayBed, http: httpx.Client) -> None:
    user_id, headers = user(bed)
    bed.dialogue.seed_knowledge(
        user_id,
        [
            ("style_profile", {"attribute": "name", "value": "Amira"}),
            ("brand_preferences", {"brand": "COS", "sentiment": "like"}),
        ],
    )
    r = http.get("/profile", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "Amira" and body["profile"]["favorite_brands"] == ["COS"]
    assert {f["knowledge_type"] for f in body["facts"]} == {"style_profile", "brand_preferences"}
    assert http.get("/profile").status_code == 401


def test_deleting_the_account_erases_messages_facts_and_photos(
    bed: GatewayBed, http: httpx.Client, s3: S3Handle
) -> None:
    user_id, headers = user(bed)
    chat(http, headers, "Remember that I love silk scarves")
    bed.dialogue.seed_knowledge(user_id, [("brand_preferences", {"brand": "Zara", "sentiment": "like"})])
    photo = f"{user_id}/photos/{uuid.uuid4()}/original.jpg"
    s3.client().put_object(Bucket=BUCKET, Key=photo, Body=b"\xff\xd8 not really a photo")

    r = http.delete("/account", headers=headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["messages_deleted"] == 2 and report["facts_deleted"] == 1 and report["photos_deleted"] == 1
    assert "user_media" not in report["not_erased"]
    assert rows_of(bed, user_id) == []
    assert s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{user_id}/").get("KeyCount") == 0
    with psycopg.connect(bed.dialogue.main_dsn) as conn:
        tombstones = conn.execute(
            "SELECT count(*) FROM deleted_messages_registry WHERE user_id = %s", (user_id,)
        ).fetchone()
    assert tombstones == (2,)
    again = http.delete("/account", headers=headers)
    assert again.status_code == 200 and again.json()["messages_deleted"] == 0
