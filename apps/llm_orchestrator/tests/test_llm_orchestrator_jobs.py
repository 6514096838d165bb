"""The orchestrator's enrichment and its beat jobs (spec 01 §18) against the real shard, Redis and
the embedding simulator: enrichment_ttl_recovery, life_event_expiry, extraction_review_sample, and
enrich_message's skip / failure / retry rules."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from llm_orchestrator import enrichment
from llm_orchestrator.runtime import Runtime
from unde_testkit.dialogue_testbed import DialogueBed
from unde_testkit.testing import PostgresHandle


@pytest.fixture(scope="module")
def bed(
    pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DialogueBed]:
    with DialogueBed(
        pg, redis_url, tmp_path_factory.mktemp("jobs_bed"), shard_db="jobs_shard", main_db="jobs_main"
    ) as bed:
        yield bed


@pytest.fixture
def rt(bed: DialogueBed) -> Iterator[Runtime]:
    bed.providers.reset()
    runtime = bed.runtime()
    try:
        yield runtime
    finally:
        runtime.close()


def sql(bed: DialogueBed, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(bed.shard_dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def user_message(
    bed: DialogueBed, text: str, *, age: dt.timedelta, attempts: int = 0
) -> tuple[uuid.UUID, ...]:
    user_id = uuid.uuid4()
    conv = sql(bed, "INSERT INTO conversations (user_id) VALUES (%s) RETURNING id", (user_id,))[0][0]
    mid = uuid.uuid4()
    sql(
        bed,
        "INSERT INTO messages (id, conversation_id, role, content, created_at, enrichment_attempts)"
        " VALUES (%s, %s, 'user', %s, now() - %s, %s)",
        (mid, conv, text, age, attempts),
    )
    return user_id, conv, mid


def status(bed: DialogueBed, mid: uuid.UUID) -> tuple[Any, ...]:
    return sql(
        bed,
        "SELECT enrichment_status, enrichment_attempts, is_embeddable, embedding IS NOT NULL, memory_snippet,"
        " enrichment_error FROM messages WHERE id = %s",
        (mid,),
    )[0]


def test_ttl_recovery_requeues_old_pending_and_fails_the_exhausted(bed: DialogueBed, rt: Runtime) -> None:
    _, conv_old, old = user_message(bed, "хочу новое пальто на зиму, бежевое", age=dt.timedelta(hours=2))
    _, _, fresh = user_message(bed, "и ещё шарф к нему, пожалуйста", age=dt.timedelta(minutes=5))
    _, _, spent = user_message(bed, "третья попытка уже была", age=dt.timedelta(hours=3), attempts=3)
    sent: list[tuple[Any, ...]] = []

    async def send(conversation_id: uuid.UUID, message_id: uuid.UUID, user_id: uuid.UUID) -> None:
        sent.append((conversation_id, message_id))

    result = rt.run(enrichment.ttl_recovery(rt, send))
    assert (conv_old, old) in sent and all(m != fresh for _, m in sent)
    assert result["failed"] >= 1 and status(bed, spent)[0] == "failed"
    assert status(bed, fresh)[0] == "pending"


def test_enrich_skips_short_messages_and_retries_a_failed_embedding(bed: DialogueBed, rt: Runtime) -> None:
    user_id, conv, short = user_message(bed, "ок 👍", age=dt.timedelta(0))
    assert rt.run(enrichment.enrich(rt, conv, short, user_id)) == "skipped"
    assert status(bed, short)[:3] == ("skipped", 1, False)

    user_id, conv, mid = user_message(bed, "Обожаю льняные рубашки светлых оттенков", age=dt.timedelta(0))
    bed.providers.fault("cohere", "error500", times=10)
    for attempt in (1, 2):
        with pytest.raises(enrichment.EmbeddingFailedError, match="embedding"):
            rt.run(enrichment.enrich(rt, conv, mid, user_id))
        row = status(bed, mid)
        assert row[0] == "pending" and row[1] == attempt and row[5].startswith("embedding")
    assert rt.run(enrichment.enrich(rt, conv, mid, user_id)) == "failed"  # the third try was the last
    assert rt.run(enrichment.enrich(rt, conv, mid, user_id)) == "failed"  # no fourth try
    assert status(bed, mid)[1] == 3

    bed.providers.reset()
    user_id, conv, ok = user_message(bed, "Обожаю льняные рубашки светлых оттенков", age=dt.timedelta(0))
    assert rt.run(enrichment.enrich(rt, conv, ok, user_id)) == "done"
    row = status(bed, ok)
    assert row[:4] == ("done", 1, True, True) and row[4]
    assert rt.run(enrichment.enrich(rt, conv, ok, user_id)) == "done"  # a repeated task is a no-op
    assert status(bed, ok)[1] == 1


def test_life_event_expiry_and_review_sample(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    past, future = bed.seed_knowledge(
        user_id,
        [
            ("life_event", {"attribute": "wedding", "date": "2026-01-10"}),
            ("life_event", {"attribute": "trip", "date": "2030-01-10"}),
        ],
    )
    sql(bed, "UPDATE user_knowledge SET expires_at = now() - interval '1 day' WHERE id = %s", (past,))
    sql(bed, "UPDATE user_knowledge SET expires_at = now() + interval '1 day' WHERE id = %s", (future,))
    assert rt.run(enrichment.life_event_expiry(rt))["expired"] >= 1
    active = dict(sql(bed, "SELECT id, is_active FROM user_knowledge WHERE user_id = %s", (user_id,)))
    assert active == {past: False, future: True}
    assert rt.run(enrichment.life_event_expiry(rt))["expired"] == 0  # nothing left to expire
    # the day's chat extractions: 1 % rounded up, ids only
    assert rt.run(enrichment.extraction_review_sample(rt))["sampled"] >= 1
