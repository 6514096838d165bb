# ruff: noqa: RUF001  (Cyrillic on purpose)
"""A dialogue turn end to end: real PostgreSQL (shard + production schemas), Redis, Celery, the three
agents as processes (``unde_testkit.dialogue_testbed``) and loopback simulators of every provider.

The first test is the spec's day-8c call through a real Celery worker (``celery -A
llm_orchestrator.celery_app worker``); the others run turns in this process on a
:class:`llm_orchestrator.runtime.Runtime`, where the simulators' records and the metrics are at hand.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from llm_orchestrator import forget
from llm_orchestrator.celery_app import make_celery
from llm_orchestrator.dialogue import ShardUnavailableError, TurnRejectedError, new_ids, run_turn
from llm_orchestrator.runtime import Runtime
from unde_testkit.dialogue_testbed import DialogueBed
from unde_testkit.service_auth import monitoring_headers
from unde_testkit.testing import PostgresHandle, free_port, running_service

DAY_8C = "Привет, подбери мне образ на свидание"


@pytest.fixture(scope="module")
def bed(
    pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DialogueBed]:
    with DialogueBed(pg, redis_url, tmp_path_factory.mktemp("dialogue_bed")) as bed:
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
    with shard(bed) as conn:
        return conn.execute(
            "SELECT m.role, m.content, m.mood_frame IS NOT NULL, m.model_used, m.duration_ms, m.turn_status,"
            " m.embedding IS NOT NULL, m.memory_snippet, m.enrichment_status, m.id"
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.user_id = %s"
            " ORDER BY m.created_at",
            (user_id,),
        ).fetchall()


def turn(rt: Runtime, user_id: uuid.UUID, message: str, **extra: Any) -> dict[str, Any]:
    result = rt.run(run_turn(rt, {"user_id": str(user_id), "message": message, **new_ids(), **extra}))
    rt.run(rt.drain())
    return result


def metric(rt: Runtime, name: str) -> float:
    return sum(
        sample.value
        for family in rt.metrics.registry.exposition_registry().collect()
        for sample in family.samples
        if sample.name == name
    )


def test_day_8c_call_through_celery_stores_one_pair_and_enriches(bed: DialogueBed, tmp_path: Path) -> None:
    """The spec's day-8c check with a UUID user, through the broker and a real worker: the answer
    comes, exactly one user and one assistant row are stored (a retried task adds none), the user
    row gets its mood frame and, from the enrichment queue, its embedding and snippet."""
    port = free_port()
    env = bed.write_env(tmp_path / "orchestrator.env", METRICS_ENABLED="true", METRICS_PORT=str(port))
    client = make_celery(bed.settings())
    user_id = uuid.uuid4()
    ids = new_ids()
    args = [str(user_id), DAY_8C, "text", None]
    worker = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "llm_orchestrator.celery_app",
        "worker",
        "-Q",
        "dialogue_queue,enrichment",
        "--pool",
        "solo",
        "--without-mingle",
        "--without-gossip",
    ]
    log = tmp_path / "worker.log"
    try:
        with running_service(worker, env, f"http://127.0.0.1:{port}/metrics", log):
            first = client.send_task("llm_orchestrator.generate_response", args=args, kwargs=ids).get(
                timeout=60
            )
            again = client.send_task("llm_orchestrator.generate_response", args=args, kwargs=ids).get(
                timeout=60
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and rows_of(bed, user_id)[0][8] == "pending":
                time.sleep(0.2)
            scraped = httpx.get(
                f"http://127.0.0.1:{port}/metrics", headers=monitoring_headers(), timeout=5
            ).text
    except BaseException:
        print(log.read_text()[-6000:], file=sys.stderr)
        raise
    assert first["text"] and first["model_used"] == bed.settings().deepseek_model
    assert first["intent"] == "fashion"
    assert first["user_message_id"] == ids["user_message_id"]
    assert again["assistant_message_id"] == ids["assistant_message_id"]
    rows = rows_of(bed, user_id)
    assert [r[0] for r in rows] == ["user", "assistant"], rows
    user_row, reply = rows
    assert user_row[1] == DAY_8C and user_row[2] is True  # mood frame stored with the user message
    assert reply[3] == bed.settings().deepseek_model and reply[4] > 0 and reply[5] == "ok"
    assert user_row[8] == "done" and user_row[6] is True and user_row[7]  # embedding + snippet
    assert "llm_orchestrator_response_time_ms_bucket" in scraped
    assert "llm_orchestrator_turns_total" in scraped


def test_fallback_to_the_second_provider_inside_the_soft_limit(bed: DialogueBed, rt: Runtime) -> None:
    bed.providers.fault("deepseek", "error500", times=1)
    result = turn(rt, uuid.uuid4(), "What should I wear to a gallery opening tonight?")
    assert result["model_used"] == rt.settings.gemini_model
    assert result["failed"] is False
    assert result["duration_ms"] < rt.settings.dialogue_soft_time_limit_s * 1000
    assert metric(rt, "llm_orchestrator_provider_fallbacks_total") == 1


def test_every_provider_down_gives_the_graceful_answer(bed: DialogueBed, rt: Runtime) -> None:
    for provider in ("deepseek", "gemini", "claude", "qwen"):
        bed.providers.fault(provider, "error503", times=5)
    user_id = uuid.uuid4()
    result = turn(rt, user_id, "Привет! Как дела сегодня у тебя?")
    assert result["failed"] is True and result["text"].startswith("Прости")
    rows = rows_of(bed, user_id)
    assert [(r[0], r[5]) for r in rows] == [("user", None), ("assistant", "failed")]


def test_soft_forgotten_message_never_reaches_the_next_context_pack(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    secret = "Мой секретный проект называется Фламинго и я о нём переживаю"
    turn(rt, user_id, secret)
    turn(rt, user_id, "Расскажи про Фламинго, что ты помнишь?")
    before = bed.providers.calls_of("deepseek")[-1]["json"]
    assert "Фламинго и я" in str(before)  # remembered while not forgotten
    message_id = next(r[9] for r in rows_of(bed, user_id) if r[1] == secret)
    conversation_id = bed.conversation_id(user_id)

    async def soft() -> None:
        async with await psycopg.AsyncConnection.connect(bed.shard_dsn, autocommit=True) as conn:
            await forget.soft_forget(conn, conversation_id, message_id)

    rt.run(soft())
    result = turn(rt, user_id, "Что ты помнишь про Фламинго?")
    after = bed.providers.calls_of("deepseek")[-1]["json"]
    assert "секретный проект" not in str(after)
    assert result["failed"] is False


def test_knowledge_is_stored_encrypted_and_a_tampered_row_is_skipped(bed: DialogueBed, rt: Runtime) -> None:
    user_id = uuid.uuid4()
    turn(rt, user_id, "Меня зовут Алия, я ношу размер M и обожаю Zara")
    # enrichment ran on the queue in production; here it runs in this process
    from llm_orchestrator import enrichment

    rows = rows_of(bed, user_id)
    rt.run(enrichment.enrich(rt, bed.conversation_id(user_id), rows[0][9], user_id))
    with shard(bed) as conn:
        stored = conn.execute(
            "SELECT id, encrypted_data, knowledge_type FROM user_knowledge WHERE user_id = %s", (user_id,)
        ).fetchall()
        assert stored, "no fact extracted"
        for _, data, _ in stored:
            assert "Алия".encode() not in bytes(data) and b"Zara" not in bytes(data)
        # flip one byte of one fact: it is counted and skipped, the turn is still answered
        conn.execute(
            "UPDATE user_knowledge"
            " SET encrypted_data = set_byte(encrypted_data, 0, get_byte(encrypted_data, 0) # 1)"
            " WHERE id = %s",
            (stored[0][0],),
        )
    result = turn(rt, user_id, "Подбери мне что-нибудь на вечер")
    assert result["text"] and "user_knowledge" in result["degraded"]
    assert metric(rt, "user_knowledge_decrypt_errors_total") == 1


def test_agent_down_gives_the_default_frame_and_the_turn_is_answered(bed: DialogueBed) -> None:
    runtime = bed.runtime(MOOD_AGENT_URL=f"http://127.0.0.1:{free_port()}")
    try:
        result = turn(runtime, uuid.uuid4(), "Hello there, any ideas for a rainy weekend outfit?")
        assert result["failed"] is False and "mood_frame" in result["degraded"]
        assert metric(runtime, "llm_orchestrator_agent_fallbacks_total") >= 1
    finally:
        runtime.close()


def test_shard_down_is_retryable_and_writes_nothing(bed: DialogueBed) -> None:
    runtime = bed.runtime(SHARD_0_DB_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/unde_shard")
    user_id = uuid.uuid4()
    try:
        with pytest.raises(ShardUnavailableError, match="unavailable"):
            runtime.run(
                run_turn(runtime, {"user_id": str(user_id), "message": "привет, как ты?", **new_ids()})
            )
    finally:
        runtime.close()
    assert rows_of(bed, user_id) == []


def test_bad_input_is_named_and_an_unknown_user_starts_a_conversation(bed: DialogueBed, rt: Runtime) -> None:
    with pytest.raises(TurnRejectedError, match="message"):
        rt.run(run_turn(rt, {"user_id": str(uuid.uuid4()), "message": "   ", **new_ids()}))
    with pytest.raises(TurnRejectedError, match="user_message_id"):
        rt.run(run_turn(rt, {"user_id": str(uuid.uuid4()), "message": "hi"}))
    user_id = uuid.uuid4()
    result = turn(rt, user_id, "слово " * 4000)  # ~24 kB: truncated, not refused
    rows = rows_of(bed, user_id)
    assert result["text"] and len(rows[0][1]) <= rt.settings.max_message_chars + 1


def persona_flushes(bed: DialogueBed) -> dict[str, float]:
    text = httpx.get(
        bed.agent_urls["persona_agent"] + "/metrics", headers=monitoring_headers(), timeout=5
    ).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("persona_agent_flushes_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = out.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_persona_flush_once_per_exchange(bed: DialogueBed, rt: Runtime) -> None:
    """The user's next message carries the reaction to the previous answer: its signals go to
    persona with that exchange's id and the exchange is flushed once; a retried turn (same ids)
    flushes nothing new (persona answers it as a replay)."""
    user_id = uuid.uuid4()
    before = persona_flushes(bed)
    turn(rt, user_id, "Привет! Хочу обновить гардероб к осени")
    second_ids = new_ids()
    turn(rt, user_id, "Ха-ха, отлично, спасибо! А что с обувью?", **second_ids)
    turn(rt, user_id, "Супер, беру!")
    after = persona_flushes(bed)
    applied = (
        after.get("applied", 0)
        + after.get("replay_shard", 0)
        - before.get("applied", 0)
        - before.get("replay_shard", 0)
    )
    assert applied == 2  # the first two exchanges; the third is flushed by the next message
    rt.run(
        run_turn(
            rt, {"user_id": str(user_id), "message": "Ха-ха, отлично, спасибо! А что с обувью?", **second_ids}
        )
    )
    rt.run(rt.drain())
    final = persona_flushes(bed)
    assert final.get("applied", 0) == after.get("applied", 0)  # nothing applied twice
