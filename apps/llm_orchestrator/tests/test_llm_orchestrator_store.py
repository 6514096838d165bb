"""Chat History reads and writes of the orchestrator against the real shard schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import psycopg
import pytest

from llm_orchestrator import store
from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database

T = TypeVar("T")


@pytest.fixture(scope="module")
def shard(pg: PostgresHandle) -> str:
    return migrate_database(pg, "orch_store_shard", "unde_shard")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _conn(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


def test_unknown_user_gets_a_new_conversation_and_ids_are_checked(shard: str) -> None:
    async def scenario() -> None:
        conn = await _conn(shard)
        user, other = uuid.uuid4(), uuid.uuid4()
        conv = uuid.uuid4()
        got, created = await store.conversation_for(conn, user, conv)
        assert (got, created) == (conv, True)
        assert await store.conversation_for(conn, user, None) == (conv, False)
        assert await store.conversation_for(conn, user, conv) == (conv, False)
        with pytest.raises(store.ConversationMismatchError, match="is not the conversation of user"):
            await store.conversation_for(conn, user, uuid.uuid4())
        # another user naming this user's conversation id is refused, not attached to it
        with pytest.raises(store.ConversationMismatchError, match="another user"):
            await store.conversation_for(conn, other, conv)
        await conn.close()

    run(scenario())


def test_insert_is_idempotent_and_counts_once(shard: str) -> None:
    async def scenario() -> None:
        conn = await _conn(shard)
        conv, _ = await store.conversation_for(conn, uuid.uuid4(), None)
        mid = uuid.uuid4()
        first = await store.insert_message(
            conn, conversation_id=conv, message_id=mid, role="user", content="привет", mood_frame={"a": 1}
        )
        again = await store.insert_message(
            conn, conversation_id=conv, message_id=mid, role="user", content="x"
        )
        assert (first, again) == (True, False)
        row = await (
            await conn.execute("SELECT message_count FROM conversations WHERE id = %s", (conv,))
        ).fetchone()
        assert row == (1,)
        content = await (
            await conn.execute("SELECT content, mood_frame FROM messages WHERE id = %s", (mid,))
        ).fetchone()
        assert content == ("привет", {"a": 1})
        await conn.close()

    run(scenario())


def test_recent_messages_skip_forgotten_and_artifacts_resolve(shard: str) -> None:
    async def scenario() -> None:
        conn = await _conn(shard)
        conv, _ = await store.conversation_for(conn, uuid.uuid4(), None)
        now = dt.datetime.now(dt.UTC)
        ids = []
        for i in range(12):
            mid = uuid.uuid4()
            ids.append(mid)
            await store.insert_message(
                conn,
                conversation_id=conv,
                message_id=mid,
                role="assistant" if i % 2 else "user",
                content=f"m{i}",
                created_at=now - dt.timedelta(minutes=30 - i),
                response_description="zara SKU 1" if i == 11 else None,
                memory_refs=(1 if i == 9 else 0) if i % 2 else None,
            )
        await conn.execute("UPDATE messages SET is_forgotten = true WHERE id = %s", (ids[10],))
        recent = await store.recent_messages(conn, conv, 10, exclude=(ids[8],))
        assert [m.content for m in recent] == [f"m{i}" for i in (0, 1, 2, 3, 4, 5, 6, 7, 9, 11)]
        assert [m.content for m in await store.recent_messages(conn, conv, 3)] == ["m8", "m9", "m11"]
        assert ids[10] not in [m.id for m in recent]
        arts = await store.recent_artifacts(conn, conv, now - dt.timedelta(minutes=25))
        assert [a[0] for a in arts] == [ids[11]]
        art = await store.artifact(conn, conv, ids[11])
        assert art is not None and art["response_description"] == "zara SKU 1"
        assert await store.artifact(conn, conv, ids[9]) is None  # not an artefact
        flags = await store.memory_flags(conn, conv, 10)
        assert flags[:2] == [False, True]  # newest first: m11 none, m9 had memories
        await conn.close()

    run(scenario())


def test_hybrid_search_without_embedding_keeps_only_full_text_hits(shard: str) -> None:
    async def scenario() -> None:
        conn = await _conn(shard)
        conv, _ = await store.conversation_for(conn, uuid.uuid4(), None)
        vec = [0.0] * 1024
        vec[5] = 1.0
        await store.insert_message(
            conn,
            conversation_id=conv,
            message_id=uuid.uuid4(),
            role="user",
            content="люблю корейские триллеры",
            is_embeddable=True,
            embedding=store.vector_text(vec),
            memory_type="preference",
        )
        hit = uuid.uuid4()
        await store.insert_message(
            conn, conversation_id=conv, message_id=hit, role="user", content="куплю тренч mango"
        )
        rows = await store.hybrid_search(conn, conv, None, "тренч", threshold=0.5, top_k=15)
        assert [r["id"] for r in rows] == [hit]
        assert rows[0]["memory_type"] == "general"
        both = await store.hybrid_search(conn, conv, vec, "тренч", threshold=0.5, top_k=15)
        assert len(both) == 2
        top = await store.hybrid_search(conn, conv, vec, "тренч", threshold=0.5, top_k=1)
        assert [r["id"] for r in top] == [both[0]["id"]]
        await conn.close()

    run(scenario())
