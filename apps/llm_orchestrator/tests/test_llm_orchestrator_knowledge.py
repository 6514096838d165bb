"""The encrypted user knowledge on a migrated shard (files/sql/unde_shard), as the shard's app_rw login:
round trip, ciphertext only at rest, tampered rows counted and skipped, supersede, expiry."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

from llm_orchestrator.crypto import MasterKeyRing, wrap_dek
from llm_orchestrator.knowledge import KNOWLEDGE_TYPES, load_knowledge, store_fact, user_dek
from unde_testkit.catalog_testing import login_dsn
from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database

T = TypeVar("T")
RING = MasterKeyRing(current=1, keys={1: bytes(range(32))})


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


@pytest.fixture(scope="module")
def admin_dsn(pg: PostgresHandle) -> str:
    return migrate_database(pg, "orch_knowledge_shard", "unde_shard")


@pytest.fixture(scope="module")
def shard_dsn(pg: PostgresHandle, admin_dsn: str) -> str:
    return login_dsn(pg, "orch_knowledge_shard", "orch_app_rw", ["unde_shard_app_rw"])


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def store(
    conn: psycopg.AsyncConnection[Any], user: uuid.UUID, ktype: str, data: dict[str, Any], **kw: Any
) -> uuid.UUID:
    kw.setdefault("confidence", 0.8)
    kw.setdefault("source_message_id", uuid.uuid4())
    kw.setdefault("source_conversation_id", uuid.uuid4())
    return await store_fact(conn, user, RING, ktype, data, **kw)


def test_round_trip_and_only_ciphertext_at_rest(shard_dsn: str, admin_dsn: str) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    secret = {"brand": "Maison Zelenaya", "note": "любит изумрудный"}

    async def body() -> None:
        conn = await connect(shard_dsn)
        try:
            msg, conv = uuid.uuid4(), uuid.uuid4()
            fid = await store(
                conn, user, "brand_preferences", secret, source_message_id=msg, source_conversation_id=conv
            )
            await store(conn, other, "budget", {"max": 50000})
            loaded = await load_knowledge(conn, user, RING)
            assert loaded.decrypt_errors == 0 and loaded.dek_error is None
            assert len(loaded.facts) == 1 and len(loaded.decrypt_ms) == 1 and loaded.decrypt_ms[0] >= 0
            fact = loaded.facts[0]
            assert fact.id == fid and fact.data == secret and fact.knowledge_type == "brand_preferences"
            assert fact.confidence == pytest.approx(0.8) and fact.version == 1
            assert fact.source_message_id == msg and fact.source_conversation_id == conv
            assert fact.expires_at is None and fact.created_at.tzinfo is not None
            assert (await load_knowledge(conn, uuid.uuid4(), RING)).facts == []
        finally:
            await conn.close()

    run(body())
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "SELECT encrypted_data, iv, auth_tag, knowledge_type, extracted_from FROM user_knowledge "
            "WHERE user_id = %s",
            (user,),
        ).fetchall()
        key_row = conn.execute(
            "SELECT encrypted_dek, master_key_version FROM user_keys WHERE user_id = %s", (user,)
        ).fetchone()
    assert len(rows) == 1
    data, iv, tag, ktype, extracted = rows[0]
    assert len(iv) == 12 and len(tag) == 16 and ktype == "brand_preferences" and extracted == "chat_pipeline"
    stored = bytes(data) + bytes(iv) + bytes(tag)
    for needle in ("Maison", "Zelenaya", "изумрудный", "brand", json.dumps(secret, ensure_ascii=False)):
        assert needle.encode() not in stored
    assert key_row is not None and key_row[1] == 1 and len(bytes(key_row[0])) == 60


def test_tampered_rows_are_counted_and_skipped(
    shard_dsn: str, admin_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    user = uuid.uuid4()

    async def stored() -> dict[str, uuid.UUID]:
        conn = await connect(shard_dsn)
        try:
            return {
                name: await store(conn, user, "style_profile", {"which": name})
                for name in ("good", "data", "iv", "tag", "moved_from", "moved_to")
            }
        finally:
            await conn.close()

    ids = run(stored())
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for column, name in (("encrypted_data", "data"), ("iv", "iv"), ("auth_tag", "tag")):
            conn.execute(
                sql.SQL(
                    "UPDATE user_knowledge SET {col} = set_byte({col}, 0, get_byte({col}, 0) # 1) "
                    "WHERE id = %s"
                ).format(col=sql.Identifier(column)),
                (ids[name],),
            )
        # a valid ciphertext of one row copied onto another row (same user and type): the AAD's row id
        conn.execute(
            "UPDATE user_knowledge t SET encrypted_data = s.encrypted_data, iv = s.iv, auth_tag = s.auth_tag "
            "FROM user_knowledge s WHERE s.id = %s AND t.id = %s",
            (ids["moved_from"], ids["moved_to"]),
        )

    async def load() -> Any:
        conn = await connect(shard_dsn)
        try:
            return await load_knowledge(conn, user, RING)
        finally:
            await conn.close()

    with caplog.at_level("WARNING", logger="llm_orchestrator.knowledge"):
        loaded = run(load())
    assert loaded.decrypt_errors == 4
    assert sorted(f.data["which"] for f in loaded.facts) == ["good", "moved_from"]
    assert len(loaded.decrypt_ms) == 2
    logged = " ".join(r.getMessage() for r in caplog.records)
    for name in ("data", "iv", "tag", "moved_to"):
        assert str(ids[name]) in logged
    assert "which" not in logged and "style_profile" not in logged


def test_supersede_by_type_and_by_key(shard_dsn: str, admin_dsn: str) -> None:
    user = uuid.uuid4()

    async def body() -> None:
        conn = await connect(shard_dsn)
        try:
            await store(conn, user, "style_profile", {"style": "casual"})
            await store(conn, user, "style_profile", {"style": "smart casual"}, supersede=True)
            await store(conn, user, "body_params", {"attribute": "waist", "value": 70})
            await store(conn, user, "body_params", {"attribute": "height", "value": 170})
            await store(
                conn, user, "body_params", {"attribute": "waist", "value": 68}, supersede_key="attribute"
            )
            await store(
                conn, user, "body_params", {"attribute": "waist", "value": 66}, supersede_key="attribute"
            )
            await store(conn, user, "life_event", {"event": "wedding"})  # no supersede: added alongside
            await store(conn, user, "life_event", {"event": "trip"})
            facts = (await load_knowledge(conn, user, RING)).facts
            by_type: dict[str, list[tuple[dict[str, Any], int]]] = {}
            for fact in facts:
                by_type.setdefault(fact.knowledge_type, []).append((fact.data, fact.version))
            assert by_type["style_profile"] == [({"style": "smart casual"}, 2)]
            assert sorted(by_type["body_params"], key=lambda x: x[0]["attribute"]) == [
                ({"attribute": "height", "value": 170}, 1),
                ({"attribute": "waist", "value": 66}, 3),
            ]
            assert [d["event"] for d, _ in by_type["life_event"]] == ["wedding", "trip"]
            with pytest.raises(ValueError, match="supersede_key 'size'"):
                await store(conn, user, "body_params", {"attribute": "x"}, supersede_key="size")
        finally:
            await conn.close()

    run(body())
    with psycopg.connect(admin_dsn) as conn:
        inactive = conn.execute(
            "SELECT knowledge_type, version FROM user_knowledge WHERE user_id = %s AND NOT is_active "
            "ORDER BY 1, 2",
            (user,),
        ).fetchall()
    assert inactive == [("body_params", 1), ("body_params", 2), ("style_profile", 1)]


def test_expired_and_inactive_facts_are_not_loaded(shard_dsn: str, admin_dsn: str) -> None:
    user = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)

    async def body() -> list[str]:
        conn = await connect(shard_dsn)
        try:
            await store(conn, user, "life_event", {"e": "past"}, expires_at=now - dt.timedelta(minutes=1))
            await store(conn, user, "life_event", {"e": "future"}, expires_at=now + dt.timedelta(days=3))
            gone = await store(conn, user, "budget", {"e": "forgotten"})
            await conn.execute("UPDATE user_knowledge SET is_active = FALSE WHERE id = %s", (gone,))
            return [f.data["e"] for f in (await load_knowledge(conn, user, RING)).facts]
        finally:
            await conn.close()

    assert run(body()) == ["future"]


def test_unknown_types_and_bad_values_are_refused(shard_dsn: str) -> None:
    async def body() -> None:
        conn = await connect(shard_dsn)
        try:
            with pytest.raises(ValueError, match="unknown knowledge_type 'life_events'"):
                await store(conn, uuid.uuid4(), "life_events", {})
            with pytest.raises(ValueError, match="extracted_from"):
                await store(conn, uuid.uuid4(), "budget", {}, extracted_from="guess")
            with pytest.raises(ValueError, match="confidence"):
                await store(conn, uuid.uuid4(), "budget", {}, confidence=1.5)
        finally:
            await conn.close()

    run(body())
    assert "life_event" in KNOWLEDGE_TYPES and len(KNOWLEDGE_TYPES) == 8


def test_two_workers_creating_a_key_agree(shard_dsn: str) -> None:
    user = uuid.uuid4()

    async def body() -> None:
        conns = [await connect(shard_dsn) for _ in range(4)]
        try:
            assert await user_dek(conns[0], user, RING, create=False) is None
            deks = await asyncio.gather(*(user_dek(c, user, RING, create=True) for c in conns))
            assert len(set(deks)) == 1 and deks[0] is not None and len(deks[0]) == 32
            assert await user_dek(conns[0], user, RING, create=False) == deks[0]
        finally:
            for c in conns:
                await c.close()

    run(body())


def test_unusable_dek_counts_every_row_and_never_raises(shard_dsn: str, admin_dsn: str) -> None:
    user = uuid.uuid4()

    async def body() -> Any:
        conn = await connect(shard_dsn)
        try:
            await store(conn, user, "budget", {"max": 1})
            await store(conn, user, "color_preferences", {"like": "green"})
            other_ring = MasterKeyRing(current=5, keys={5: bytes(32)})
            return await load_knowledge(conn, user, other_ring)  # the DEK's version 1 is not in this ring
        finally:
            await conn.close()

    loaded = run(body())
    assert loaded.facts == [] and loaded.decrypt_errors == 2
    assert loaded.dek_error is not None and "version 1 is not in the key ring" in loaded.dek_error
    # a DEK wrapped for another user (AAD mismatch) is unusable too
    blob, _ = wrap_dek(RING, uuid.uuid4(), bytes(32))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("UPDATE user_keys SET encrypted_dek = %s WHERE user_id = %s", (blob, user))

    async def again() -> Any:
        conn = await connect(shard_dsn)
        try:
            return await load_knowledge(conn, user, RING)
        finally:
            await conn.close()

    loaded = run(again())
    assert (
        loaded.decrypt_errors == 2
        and loaded.dek_error is not None
        and "does not authenticate" in loaded.dek_error
    )
