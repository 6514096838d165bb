"""verify-and-replay on the dialogue test bed: real PostgreSQL (shard + production), Redis, the agents,
the provider stand-ins; the first test goes through the broker and a real Celery worker, the others
call :func:`llm_orchestrator.replay.verify_and_replay` on a Runtime in this process.

A "gap" is made as a failover makes it: real turns are answered and stored, the app keeps the pairs
as it got them, then the newest pairs' rows vanish from the shard (the WAL the new primary never
received) and the app replays them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from llm_orchestrator import account
from llm_orchestrator.celery_app import make_celery
from llm_orchestrator.dialogue import new_ids, run_turn
from llm_orchestrator.replay import (
    REPLAY_MODEL,
    ConversationNotOwnedError,
    ReplayRejectedError,
    verify_and_replay,
)
from llm_orchestrator.runtime import Runtime
from unde_testkit.dialogue_testbed import DialogueBed
from unde_testkit.service_auth import monitoring_headers
from unde_testkit.testing import PostgresHandle, free_port, running_service


@pytest.fixture(scope="module")
def bed(
    pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DialogueBed]:
    with DialogueBed(pg, redis_url, tmp_path_factory.mktemp("replay_bed")) as bed:
        yield bed


@pytest.fixture
def rt(bed: DialogueBed) -> Iterator[Runtime]:
    bed.providers.reset()
    runtime = bed.runtime()
    try:
        yield runtime
    finally:
        runtime.close()


def shard(bed: DialogueBed) -> psycopg.Connection[Any]:
    return psycopg.connect(bed.shard_dsn, autocommit=True)


def rows_of(bed: DialogueBed, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """(id, role, content, created_at, model_used, response_description, enrichment_status)."""
    with shard(bed) as conn:
        return conn.execute(
            "SELECT m.id, m.role, m.content, m.created_at, m.model_used, m.response_description,"
            " m.enrichment_status FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.user_id = %s ORDER BY m.created_at, m.role DESC",
            (user_id,),
        ).fetchall()


def pairs_from_rows(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The pairs as the app holds them (what it sent, what it was answered, when)."""
    out = []
    for user_row, reply in zip(rows[0::2], rows[1::2], strict=True):
        assert (user_row[1], reply[1]) == ("user", "assistant")
        out.append(
            {
                "user_message": {
                    "id": str(user_row[0]),
                    "text": user_row[2],
                    "created_at": user_row[3].isoformat(),
                    "input_type": "text",
                },
                "assistant_message": {
                    "id": str(reply[0]),
                    "text": reply[2],
                    "created_at": reply[3].isoformat(),
                    "voice_params": {"speed": 1.0},
                },
            }
        )
    return out


def lose(bed: DialogueBed, ids: list[str]) -> None:
    """The rows the new primary never received."""
    with shard(bed) as conn:
        conn.execute("DELETE FROM messages WHERE id = ANY(%s::uuid[])", (ids,))


def ids_of(pairs: list[dict[str, Any]]) -> list[str]:
    return [p[k]["id"] for p in pairs for k in ("user_message", "assistant_message")]


def metric(rt: Runtime, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in rt.metrics.registry.exposition_registry().collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def queued_enrichment(bed: DialogueBed) -> list[list[Any]]:
    """The args of the enrich_message tasks waiting on the enrichment queue (kombu's Redis list)."""
    client = redis.Redis.from_url(bed.env()["CELERY_BROKER_URL"])
    try:
        out = []
        for raw in client.lrange("enrichment", 0, -1):
            message = json.loads(raw)
            if message["headers"]["task"] == "llm_orchestrator.enrich_message":
                body = json.loads(base64.b64decode(message["body"]))
                out.append(body[0])
        return out
    finally:
        client.close()


def clear_enrichment_queue(bed: DialogueBed) -> None:
    client = redis.Redis.from_url(bed.env()["CELERY_BROKER_URL"])
    try:
        client.delete("enrichment")
    finally:
        client.close()


def turns(rt: Runtime, user_id: uuid.UUID, n: int) -> None:
    for i in range(n):
        message = f"Outfit idea number {i} for a weekend brunch?"
        rt.run(run_turn(rt, {"user_id": str(user_id), "message": message, **new_ids()}))
    rt.run(rt.drain())


def test_a_ten_pair_gap_is_restored_through_celery_and_a_second_replay_inserts_nothing(
    bed: DialogueBed, tmp_path: Path
) -> None:
    """Twelve turns through a real worker; the last ten pairs vanish from the shard; the app's
    replay (ten pairs + the two confirmed before them as the safety net) inserts the ten pairs
    exactly as they were, queues their user messages for enrichment (done by the worker), and a
    second replay inserts nothing."""
    port = free_port()
    env = bed.write_env(tmp_path / "orchestrator.env", METRICS_ENABLED="true", METRICS_PORT=str(port))
    client = make_celery(bed.settings())
    user_id = uuid.uuid4()
    worker = [
        sys.executable, "-m", "celery", "-A", "llm_orchestrator.celery_app", "worker",
        "-Q", "dialogue_queue,enrichment", "--pool", "solo", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    log = tmp_path / "worker.log"

    def call(task: str, kwargs: dict[str, Any]) -> Any:
        return client.send_task(task, kwargs=kwargs).get(timeout=60)

    try:
        with running_service(worker, env, f"http://127.0.0.1:{port}/metrics", log):
            for i in range(12):
                client.send_task(
                    "llm_orchestrator.generate_response",
                    args=[str(user_id), f"What goes with my navy blazer, idea {i}?", "text", None],
                    kwargs=new_ids(),
                ).get(timeout=60)
            before = rows_of(bed, user_id)
            assert len(before) == 24
            conversation_id = str(bed.conversation_id(user_id))
            app_pairs = pairs_from_rows(before)
            gap, confirmed = app_pairs[2:], ids_of(app_pairs[:2])
            lose(bed, ids_of(gap))
            assert len(rows_of(bed, user_id)) == 4
            request: dict[str, Any] = {
                "user_id": str(user_id),
                "conversation_id": conversation_id,
                "pairs": gap,
                "recent_confirmed_ids": confirmed,
            }
            first = call("llm_orchestrator.verify_and_replay", request)
            second = call("llm_orchestrator.verify_and_replay", request)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(
                r[6] == "pending" for r in rows_of(bed, user_id) if r[1] == "user"
            ):
                time.sleep(0.2)
            scraped = httpx.get(
                f"http://127.0.0.1:{port}/metrics", headers=monitoring_headers(), timeout=5
            ).text
    except BaseException:
        print(log.read_text()[-6000:], file=sys.stderr)
        raise
    assert sorted(first["inserted_ids"]) == sorted(ids_of(gap))  # 10 pairs = 20 messages
    assert sorted(first["present_ids"]) == sorted(confirmed)
    assert first["missing_confirmed_ids"] == [] and first["deleted_ids"] == []
    assert second["inserted_ids"] == []
    assert sorted(second["present_ids"]) == sorted(ids_of(gap) + confirmed)
    after = rows_of(bed, user_id)
    assert [(r[0], r[1], r[2], r[3]) for r in after] == [(r[0], r[1], r[2], r[3]) for r in before]
    assert {r[4] for r in after[4:] if r[1] == "assistant"} == {REPLAY_MODEL}
    assert all(r[6] == "done" for r in after if r[1] == "user")  # enrichment backfill ran
    assert 'replay_requests_total{outcome="ok"} 2.0' in scraped
    assert "llm_orchestrator_replay_pairs_inserted_total 10.0" in scraped


def test_a_pair_whose_reply_was_lost_gets_only_the_reply(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    turns(rt, user_id, 2)
    app_pairs = pairs_from_rows(rows_of(bed, user_id))
    lose(bed, [app_pairs[1]["assistant_message"]["id"]])
    clear_enrichment_queue(bed)
    result = rt.run(
        verify_and_replay(
            rt,
            {
                "user_id": str(user_id),
                "conversation_id": str(bed.conversation_id(user_id)),
                "pairs": app_pairs,
            },
        )
    )
    assert result["inserted_ids"] == [app_pairs[1]["assistant_message"]["id"]]
    assert len(result["present_ids"]) == 3
    assert queued_enrichment(bed) == []  # no user message was replayed
    assert metric(rt, "llm_orchestrator_replay_pairs_inserted_total") == 1


def test_replayed_user_messages_are_queued_for_enrichment_backfill(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    pair = {
        "user_message": {"id": str(uuid.uuid4()), "text": "Remember my sister Amira?", "created_at": now},
        "assistant_message": {"id": str(uuid.uuid4()), "text": "Of course!", "created_at": now},
    }
    clear_enrichment_queue(bed)
    result = rt.run(
        verify_and_replay(
            rt, {"user_id": str(user_id), "conversation_id": str(uuid.uuid4()), "pairs": [pair]}
        )
    )
    assert len(result["inserted_ids"]) == 2
    queued = queued_enrichment(bed)
    assert [(q[1], q[2], q[3]) for q in queued] == [(pair["user_message"]["id"], str(user_id), "backfill")]
    assert queued[0][0] == result["conversation_id"]


def test_an_artefact_reply_gets_its_response_description(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    reply_id = str(uuid.uuid4())
    stylist = {
        "items": [
            {"item_id": "991", "sku": "ZR-123", "brand": "Zara", "name": "Midi dress", "price": 199,
             "currency": "AED", "store": "Zara Dubai Hills"},
        ]
    }  # fmt: skip
    pair = {
        "user_message": {"id": str(uuid.uuid4()), "text": "Show me a dress", "created_at": now},
        "assistant_message": {
            "id": reply_id,
            "text": "Here is a look.",
            "created_at": now + dt.timedelta(seconds=2),
            "artifact": {"kind": "stylist", "result": stylist},
        },
    }
    rt.run(
        verify_and_replay(
            rt, {"user_id": str(user_id), "conversation_id": str(uuid.uuid4()), "pairs": [pair]}
        )
    )
    description = next(r[5] for r in rows_of(bed, user_id) if str(r[0]) == reply_id)
    assert description.startswith("Подборка стилиста: Zara Midi dress")
    assert "SKU ZR-123" in description and "item_id 991" in description


def test_another_users_conversation_is_refused_and_nothing_written(bed: DialogueBed, rt: Runtime) -> None:
    owner = uuid.uuid4()
    turns(rt, owner, 1)
    theirs = str(bed.conversation_id(owner))
    intruder = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    pair = {
        "user_message": {"id": str(uuid.uuid4()), "text": "planted", "created_at": now},
        "assistant_message": {"id": str(uuid.uuid4()), "text": "planted reply", "created_at": now},
    }
    with pytest.raises(ConversationNotOwnedError, match="another user"):
        rt.run(verify_and_replay(rt, {"user_id": str(intruder), "conversation_id": theirs, "pairs": [pair]}))
    assert len(rows_of(bed, owner)) == 2 and rows_of(bed, intruder) == []
    assert metric(rt, "replay_requests_total", outcome="rejected") == 1


def test_a_deleted_message_is_never_brought_back(bed: DialogueBed, rt: Runtime) -> None:
    """The user hard-deleted a message; the shard was then restored without it (no row at all):
    its tombstone in production keeps a replay from resurrecting it."""
    user_id = uuid.uuid4()
    turns(rt, user_id, 1)
    app_pairs = pairs_from_rows(rows_of(bed, user_id))
    user_message_id = app_pairs[0]["user_message"]["id"]
    rt.run(account.forget(rt, {"user_id": str(user_id), "mode": "hard", "message_id": user_message_id}))
    lose(bed, ids_of(app_pairs))
    result = rt.run(
        verify_and_replay(
            rt,
            {
                "user_id": str(user_id),
                "conversation_id": str(bed.conversation_id(user_id)),
                "pairs": app_pairs,
                "recent_confirmed_ids": [user_message_id],
            },
        )
    )
    assert result["deleted_ids"] == [user_message_id]
    assert result["inserted_ids"] == [app_pairs[0]["assistant_message"]["id"]]
    assert result["missing_confirmed_ids"] == []
    assert [r[1] for r in rows_of(bed, user_id)] == ["assistant"]


def test_confirmed_ids_the_shard_lost_are_reported(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    turns(rt, user_id, 2)
    app_pairs = pairs_from_rows(rows_of(bed, user_id))
    lost = ids_of(app_pairs[:1])
    lose(bed, lost)
    result = rt.run(
        verify_and_replay(
            rt,
            {
                "user_id": str(user_id),
                "conversation_id": str(bed.conversation_id(user_id)),
                "pairs": [],
                "recent_confirmed_ids": ids_of(app_pairs),
            },
        )
    )
    assert result["missing_confirmed_ids"] == lost
    assert sorted(result["present_ids"]) == sorted(ids_of(app_pairs[1:]))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda p: p["assistant_message"].update(id=p["user_message"]["id"]), "appears twice"),
        (lambda p: p["user_message"].update(created_at="2026-01-01T10:00:00"), "timezone"),
        (lambda p: p["user_message"].update(text=""), "text"),
        (lambda p: p["assistant_message"].update(artifact={"kind": "poem", "result": {}}), "kind"),
        (lambda p: p.pop("assistant_message"), "assistant_message"),
    ],
)
def test_bad_input_is_rejected_naming_the_field(
    bed: DialogueBed, rt: Runtime, change: Any, named: str
) -> None:
    now = dt.datetime.now(dt.UTC).isoformat()
    pair: dict[str, Any] = {
        "user_message": {"id": str(uuid.uuid4()), "text": "hi", "created_at": now},
        "assistant_message": {"id": str(uuid.uuid4()), "text": "hello", "created_at": now},
    }
    change(pair)
    user_id = uuid.uuid4()
    with pytest.raises(ReplayRejectedError, match=named):
        rt.run(
            verify_and_replay(
                rt, {"user_id": str(user_id), "conversation_id": str(uuid.uuid4()), "pairs": [pair]}
            )
        )
    assert rows_of(bed, user_id) == []
