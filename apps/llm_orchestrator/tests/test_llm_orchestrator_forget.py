"""Soft forget, hard delete, the GDPR erase of a user and the tombstone copy, on a migrated shard and
production database (as the shard's app_rw and production's orchestrator logins), a real Redis and an
S3-compatible server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from psycopg import errors, sql

from llm_orchestrator.crypto import MasterKeyRing
from llm_orchestrator.forget import (
    PERSONA_TABLES,
    copy_registry_to_object_storage,
    erase_user,
    hard_delete,
    soft_forget,
)
from llm_orchestrator.knowledge import load_knowledge, store_fact
from unde_common.s3 import ObjectStore
from unde_testkit.catalog_testing import login_dsn
from unde_testkit.testing import PostgresHandle, S3Handle
from unde_testkit.testing_sql import migrate_database

T = TypeVar("T")
RING = MasterKeyRing(current=1, keys={1: bytes(range(32))})
VECTOR = "[" + ",".join(["0.1"] * 1024) + "]"
MEDIA_BUCKET = "orch-forget-user-media"
BACKUP_BUCKET = "orch-forget-backups"


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


@pytest.fixture(scope="module")
def shard_admin(pg: PostgresHandle) -> str:
    return migrate_database(pg, "orch_forget_shard", "unde_shard")


@pytest.fixture(scope="module")
def main_admin(pg: PostgresHandle) -> str:
    return migrate_database(pg, "orch_forget_main", "unde_main")


@pytest.fixture(scope="module")
def shard_dsn(pg: PostgresHandle, shard_admin: str) -> str:
    return login_dsn(pg, "orch_forget_shard", "orch_app_rw", ["unde_shard_app_rw"])


@pytest.fixture(scope="module")
def main_dsn(pg: PostgresHandle, main_admin: str) -> str:
    return login_dsn(pg, "orch_forget_main", "orch_orchestrator", ["unde_main_orchestrator"])


@pytest.fixture(scope="module")
def s3_client(s3: S3Handle) -> Any:
    client = s3.client()
    for bucket in (MEDIA_BUCKET, BACKUP_BUCKET):
        ObjectStore(client, bucket).ensure_bucket()
    return client


def redis_db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture
def redis_dbs(redis_url: str) -> Iterator[dict[int, redis.Redis]]:
    clients = {db: redis.Redis.from_url(redis_db(redis_url, db)) for db in (9, 13, 14)}
    yield clients
    for client in clients.values():
        client.close()


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


def seed_user(
    shard_admin: str, main_admin: str, user: uuid.UUID, messages: int = 3
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A conversation with ``messages`` embedded user messages with snippets, persona rows, a
    routing entry and a recognition request."""
    conv = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(messages)]
    with psycopg.connect(shard_admin, autocommit=True) as conn:
        conn.execute("INSERT INTO conversations (id, user_id) VALUES (%s, %s)", (conv, user))
        for i, mid in enumerate(ids):
            conn.execute(
                "INSERT INTO messages (id, conversation_id, role, content, embedding, is_embeddable, "
                "memory_snippet, response_description, memory_confidence) "
                "VALUES (%s, %s, 'user', %s, %s::vector, TRUE, %s, 'desc', 0.7)",
                (mid, conv, f"message {i} of {user}", VECTOR, f"snippet {i}"),
            )
        conn.execute("INSERT INTO relationship_stage (user_id, stage) VALUES (%s, 1)", (user,))
        conn.execute(
            "INSERT INTO persona_temp_blocks (user_id, key, until, reason) "
            "VALUES (%s, 'humor', now() + interval '1 day', 'x')",
            (user,),
        )
        conn.execute(
            "INSERT INTO signal_daily_deltas (user_id, field, total_delta) VALUES (%s, 'humor', 0.1)", (user,)
        )
        conn.execute(
            "INSERT INTO persona_profiles (user_id, profile, contract_version) VALUES (%s, '{}', '1.0')",
            (user,),
        )
        conn.execute(
            "INSERT INTO persona_applied_flushes (user_id, exchange_id, applied_with) "
            "VALUES (%s, 'e1', 'e1')",
            (user,),
        )
    with psycopg.connect(main_admin, autocommit=True) as conn:
        conn.execute("INSERT INTO routing_table (user_id, shard_index) VALUES (%s, 0)", (user,))
        conn.execute("INSERT INTO recognition_requests (user_id, photo_url) VALUES (%s, 'photo')", (user,))
    return conv, ids


async def add_facts(
    shard_dsn: str, user: uuid.UUID, conv: uuid.UUID, sources: list[uuid.UUID]
) -> list[uuid.UUID]:
    conn = await connect(shard_dsn)
    try:
        return [
            await store_fact(
                conn,
                user,
                RING,
                "style_profile",
                {"n": i},
                confidence=0.5,
                source_message_id=source,
                source_conversation_id=conv,
            )
            for i, source in enumerate(sources)
        ]
    finally:
        await conn.close()


def message_row(shard_admin: str, conv: uuid.UUID, mid: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(shard_admin) as conn:
        cur = conn.execute(
            "SELECT content, embedding IS NULL AS no_embedding, memory_snippet, memory_confidence, "
            "response_description, is_forgotten, deleted_at, tsv::text AS tsv FROM messages "
            "WHERE conversation_id = %s AND id = %s",
            (conv, mid),
        )
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return dict(zip([c.name for c in cur.description], row, strict=True))


def test_soft_forget_hides_the_message_and_deactivates_its_facts(
    shard_admin: str, main_admin: str, shard_dsn: str
) -> None:
    user = uuid.uuid4()
    conv, ids = seed_user(shard_admin, main_admin, user)
    run(add_facts(shard_dsn, user, conv, [ids[0], ids[0], ids[1]]))

    async def body() -> tuple[Any, Any, Any, list[int]]:
        conn = await connect(shard_dsn)
        try:
            first = await soft_forget(conn, conv, ids[0])
            again = await soft_forget(conn, conv, ids[0])
            missing = await soft_forget(conn, conv, uuid.uuid4())
            left = [f.data["n"] for f in (await load_knowledge(conn, user, RING)).facts]
            return first, again, missing, left
        finally:
            await conn.close()

    first, again, missing, left = run(body())
    assert (
        first.found and first.changed and first.snippets_nullified == 1 and first.knowledge_deactivated == 2
    )
    assert (
        again.found
        and not again.changed
        and again.snippets_nullified == 0
        and again.knowledge_deactivated == 0
    )
    assert not missing.found and not missing.changed
    assert left == [2]
    row = message_row(shard_admin, conv, ids[0])
    assert row["is_forgotten"] and row["no_embedding"] and row["memory_snippet"] is None
    assert row["content"] == f"message 0 of {user}" and row["deleted_at"] is None  # the text stays
    assert row["response_description"] == "desc"  # only an explicit "forget this look" clears it
    assert not message_row(shard_admin, conv, ids[1])["is_forgotten"]


def test_hard_delete_tombstones_first_and_is_idempotent(
    shard_admin: str, main_admin: str, shard_dsn: str, main_dsn: str
) -> None:
    user = uuid.uuid4()
    conv, ids = seed_user(shard_admin, main_admin, user)
    run(add_facts(shard_dsn, user, conv, [ids[0], ids[1]]))

    async def body() -> tuple[Any, Any]:
        shard, prod = await connect(shard_dsn), await connect(main_dsn)
        try:
            first = await hard_delete(shard, prod, conv, ids[0], user)
            again = await hard_delete(shard, prod, conv, ids[0], user)
            with pytest.raises(ValueError, match="does not belong"):
                await hard_delete(shard, prod, conv, ids[1], uuid.uuid4())
            assert not (await hard_delete(shard, prod, conv, uuid.uuid4(), user)).found
            return first, again
        finally:
            await shard.close()
            await prod.close()

    first, again = run(body())
    assert first.found and first.changed and first.tombstone_written and first.knowledge_deleted == 1
    assert first.snippets_nullified == 1
    assert again.found and not again.changed and not again.tombstone_written and again.knowledge_deleted == 0
    row = message_row(shard_admin, conv, ids[0])
    assert row["content"] == "[deleted]" and row["tsv"] == "'deleted':1"
    assert row["no_embedding"] and row["memory_snippet"] is None and row["memory_confidence"] is None
    assert row["response_description"] is None and row["is_forgotten"] and row["deleted_at"] is not None
    with psycopg.connect(main_admin) as conn:
        tombstones = conn.execute(
            "SELECT message_id, user_id, reason FROM deleted_messages_registry WHERE conversation_id = %s",
            (conv,),
        ).fetchall()
    assert tombstones == [(ids[0], user, "user_request")]
    with psycopg.connect(shard_admin) as conn:
        facts = conn.execute(
            "SELECT source_message_id FROM user_knowledge WHERE user_id = %s", (user,)
        ).fetchall()
    assert facts == [(ids[1],)]


def test_hard_delete_interrupted_between_the_databases_is_finished_by_a_rerun(
    shard_admin: str, main_admin: str, shard_dsn: str, main_dsn: str
) -> None:
    user = uuid.uuid4()
    conv, ids = seed_user(shard_admin, main_admin, user, messages=1)
    holder = psycopg.connect(shard_admin)
    try:
        holder.execute(
            "SELECT 1 FROM messages WHERE conversation_id = %s AND id = %s FOR UPDATE", (conv, ids[0])
        )

        async def interrupted() -> None:
            shard, prod = await connect(shard_dsn), await connect(main_dsn)
            try:
                await shard.execute("SET lock_timeout = '200ms'")
                with pytest.raises(errors.LockNotAvailable):
                    await hard_delete(shard, prod, conv, ids[0], user)
            finally:
                await shard.close()
                await prod.close()

        run(interrupted())
        with psycopg.connect(main_admin) as conn:
            assert conn.execute(
                "SELECT count(*) FROM deleted_messages_registry WHERE conversation_id = %s", (conv,)
            ).fetchone() == (1,)
        assert message_row(shard_admin, conv, ids[0])["content"] != "[deleted]"
    finally:
        holder.rollback()
        holder.close()

    async def rerun() -> Any:
        shard, prod = await connect(shard_dsn), await connect(main_dsn)
        try:
            return await hard_delete(shard, prod, conv, ids[0], user)
        finally:
            await shard.close()
            await prod.close()

    result = run(rerun())
    assert result.changed and not result.tombstone_written
    assert message_row(shard_admin, conv, ids[0])["content"] == "[deleted]"


def user_rows(shard_admin: str, main_admin: str, user: uuid.UUID, conv: uuid.UUID) -> dict[str, int]:
    """Rows naming the user (or their conversation) in every table of both databases but the registry."""
    counts: dict[str, int] = {}
    for dsn, db in ((shard_admin, "shard"), (main_admin, "main")):
        with psycopg.connect(dsn) as conn:
            tables = conn.execute(
                "SELECT c.table_name, c.column_name FROM information_schema.columns c "
                "JOIN information_schema.tables t USING (table_schema, table_name) "
                "WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' "
                "AND c.column_name IN ('user_id', 'conversation_id') AND c.table_name !~ '^messages_p' "
                "AND c.table_name <> 'deleted_messages_registry'"
            ).fetchall()
            for table, column in tables:
                value = user if column == "user_id" else conv
                row = conn.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
                        sql.Identifier(table), sql.Identifier(column)
                    ),
                    (value,),
                ).fetchone()
                assert row is not None
                counts[f"{db}.{table}.{column}"] = row[0]
    return counts


def seed_outside(client: Any, redis_dbs: dict[int, redis.Redis], user: uuid.UUID) -> None:
    store = ObjectStore(client, MEDIA_BUCKET)
    for key in ("photos/p1/original.jpg", "photos/p1/thumb.jpg", "tryon/t1/result.jpg"):
        store.put_bytes(f"{user}/{key}", b"jpeg")
    frame = f"frame-{uuid.uuid4()}"
    redis_dbs[9].set(f"mood:last:{user}", json.dumps({"mood_frame_id": frame, "valence": 0.1}))
    redis_dbs[9].set(f"mood:frame:{frame}", "{}")
    redis_dbs[13].hset(f"persona:buf:{user}:ex1", "s1", "{}")
    redis_dbs[13].zadd(f"persona:bufidx:{user}", {"ex1": 1})
    redis_dbs[13].set(f"persona:ver:{user}", 3)
    redis_dbs[13].set(f"persona:idem:flush:{user}:ex1", 1)
    redis_dbs[13].set(f"persona:result:flush:{user}:ex1", "{}")
    redis_dbs[14].set(f"session:{user}", "x")


def redis_keys_of(redis_dbs: dict[int, redis.Redis], user: uuid.UUID) -> list[bytes]:
    return sorted(k for c in redis_dbs.values() for k in c.scan_iter(match=f"*{user}*"))


def test_erase_user_removes_everything_once_and_leaves_others(
    shard_admin: str,
    main_admin: str,
    shard_dsn: str,
    main_dsn: str,
    s3_client: Any,
    redis_dbs: dict[int, redis.Redis],
    redis_url: str,
) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    conv, ids = seed_user(shard_admin, main_admin, user, messages=4)
    other_conv, other_ids = seed_user(shard_admin, main_admin, other)
    run(add_facts(shard_dsn, user, conv, ids[:3]))
    run(add_facts(shard_dsn, other, other_conv, other_ids))
    seed_outside(s3_client, redis_dbs, user)
    seed_outside(s3_client, redis_dbs, other)
    other_before = user_rows(shard_admin, main_admin, other, other_conv)
    frame_of_user = json.loads(redis_dbs[9].get(f"mood:last:{user}") or b"{}")["mood_frame_id"]

    async def erase() -> dict[str, Any]:
        shard, prod = await connect(shard_dsn), await connect(main_dsn)
        clients = [aioredis.Redis.from_url(redis_db(redis_url, db)) for db in (9, 13, 14, 12)]
        try:
            report = await erase_user(
                [shard], prod, user, s3=s3_client, media_bucket=MEDIA_BUCKET, redis_clients=clients
            )
            return report.as_dict()
        finally:
            for c in clients:
                await c.aclose()
            await shard.close()
            await prod.close()

    first = run(erase())
    assert first["changed"] is True
    assert first["tombstones_written"] == 4 and first["messages_deleted"] == 4
    assert first["conversations_deleted"] == 1 and first["user_knowledge_deleted"] == 3
    assert first["user_keys_deleted"] == 1 and first["routing_table_deleted"] == 1
    assert first["recognition_requests_deleted"] == 1 and first["media_objects_deleted"] == 3
    assert first["persona_rows_deleted"] == dict.fromkeys(PERSONA_TABLES, 1)
    by_db = {label.rsplit("/", 1)[1]: n for label, n in first["redis_keys_deleted"].items()}
    assert by_db == {"9": 2, "13": 5, "14": 1, "12": 0}

    second = run(erase())
    assert second["changed"] is False
    counts = {k: v for k, v in second.items() if k not in ("changed", "user_id")}
    assert all(v == 0 for k, v in counts.items() if isinstance(v, int)), counts
    assert set(second["persona_rows_deleted"].values()) == {0}
    assert set(second["redis_keys_deleted"].values()) == {0}

    remaining = user_rows(shard_admin, main_admin, user, conv)
    assert remaining and set(remaining.values()) == {0}, remaining
    assert "shard.messages.conversation_id" in remaining and "main.routing_table.user_id" in remaining
    assert list(ObjectStore(s3_client, MEDIA_BUCKET).list_keys(f"{user}/")) == []
    assert redis_keys_of(redis_dbs, user) == [] and redis_dbs[9].get(f"mood:frame:{frame_of_user}") is None
    with psycopg.connect(main_admin) as conn:
        tombstones = conn.execute(
            "SELECT message_id, reason FROM deleted_messages_registry WHERE user_id = %s ORDER BY message_id",
            (user,),
        ).fetchall()
    assert tombstones == [(mid, "gdpr_erase") for mid in sorted(ids)]

    # the other user is untouched
    assert user_rows(shard_admin, main_admin, other, other_conv) == other_before
    assert len(list(ObjectStore(s3_client, MEDIA_BUCKET).list_keys(f"{other}/"))) == 3
    assert len(redis_keys_of(redis_dbs, other)) == 7

    async def other_facts() -> int:
        conn = await connect(shard_dsn)
        try:
            return len((await load_knowledge(conn, other, RING)).facts)
        finally:
            await conn.close()

    assert run(other_facts()) == 3


def test_tombstone_registry_copy_per_day_is_idempotent(
    main_admin: str, main_dsn: str, s3_client: Any
) -> None:
    day = dt.date(2031, 1, 15)
    at = dt.datetime(2031, 1, 15, 10, tzinfo=dt.UTC)
    rows = [(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), at + dt.timedelta(minutes=i)) for i in range(2)]
    with psycopg.connect(main_admin, autocommit=True) as conn:
        for conv, mid, user, when in rows:
            conn.execute(
                "INSERT INTO deleted_messages_registry (conversation_id, message_id, user_id, deleted_at) "
                "VALUES (%s, %s, %s, %s)",
                (conv, mid, user, when),
            )
        # the next day (UTC) is not part of the copy
        conn.execute(
            "INSERT INTO deleted_messages_registry (conversation_id, message_id, deleted_at) "
            "VALUES (%s, %s, %s)",
            (uuid.uuid4(), uuid.uuid4(), dt.datetime(2031, 1, 16, tzinfo=dt.UTC)),
        )

    async def copy(which: dt.date) -> Any:
        conn = await connect(main_dsn)
        try:
            return await copy_registry_to_object_storage(conn, s3_client, BACKUP_BUCKET, "tombstones/", which)
        finally:
            await conn.close()

    first = run(copy(day))
    assert first.key == "tombstones/2031-01-15.jsonl" and first.rows == 2 and first.changed
    again = run(copy(day))
    assert again.rows == 2 and not again.changed
    lines = ObjectStore(s3_client, BACKUP_BUCKET).get_bytes(first.key).decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "conversation_id": str(conv),
            "message_id": str(mid),
            "user_id": str(user),
            "deleted_at": when.isoformat(),
            "reason": "user_request",
        }
        for conv, mid, user, when in rows
    ]
    with psycopg.connect(main_admin, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deleted_messages_registry (conversation_id, message_id, deleted_at, reason) "
            "VALUES (%s, %s, %s, 'gdpr_erase')",
            (uuid.uuid4(), uuid.uuid4(), at + dt.timedelta(hours=5)),
        )
    later = run(copy(day))
    assert later.rows == 3 and later.changed
    empty = run(copy(dt.date(2031, 2, 1)))
    assert empty.rows == 0 and empty.changed
    assert ObjectStore(s3_client, BACKUP_BUCKET).get_bytes(empty.key) == b""
    assert not run(copy(dt.date(2031, 2, 1))).changed
