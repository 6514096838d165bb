"""Constraints, partitions and the canonical queries of files/sql, on the migrated databases.

Every test works inside a transaction that is rolled back, so they share one migrated server."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from sql.conftest import REPO, Postgres

HYBRID_SEARCH = REPO / "apps" / "llm_orchestrator" / "src" / "llm_orchestrator" / "sql" / "hybrid_search.sql"
UTC = dt.UTC


@pytest.fixture
def db(migrated: Postgres, request: pytest.FixtureRequest) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the database named by the test's ``database`` mark, rolled back after."""
    marker = request.node.get_closest_marker("database")
    assert marker is not None, "mark the test with @pytest.mark.database('unde_...')"
    with migrated.connect(marker.args[0]) as conn:
        yield conn
        conn.rollback()


def savepoint_raises(
    conn: psycopg.Connection[Any], exc: type[Exception], query: str, params: Any = None
) -> None:
    with pytest.raises(exc), conn.transaction():
        conn.execute(query, params)


# --- unde_staging --------------------------------------------------------------------------


@pytest.mark.database("unde_staging")
def test_raw_availability_is_one_row_per_product_store_and_utc_day(db: psycopg.Connection[Any]) -> None:
    insert = (
        "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at) "
        "VALUES ('zara', 7, 'P1', %s, %s)"
    )
    morning = dt.datetime(2026, 2, 13, 0, 30, tzinfo=UTC)
    db.execute(insert, ('["S"]', morning))
    # same UTC day, other hour -> conflict
    savepoint_raises(db, errors.UniqueViolation, insert, ('["M"]', morning + dt.timedelta(hours=23)))
    # the same instant written with another offset is the same UTC day
    savepoint_raises(
        db,
        errors.UniqueViolation,
        insert,
        ('["M"]', dt.datetime(2026, 2, 13, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))),
    )
    # next UTC day, other store, other product: fine
    db.execute(insert, ('["L"]', morning + dt.timedelta(days=1)))
    db.execute(insert.replace("7,", "8,"), ('["L"]', morning))
    db.execute(insert.replace("'P1'", "'P2'"), ('["L"]', morning))
    # the hourly poll's upsert keeps one row per day and the latest poll
    db.execute(
        insert + " ON CONFLICT (brand, store_id, product_id, fetched_on) "
        "DO UPDATE SET sizes_in_stock = EXCLUDED.sizes_in_stock, fetched_at = EXCLUDED.fetched_at",
        ('["XL"]', morning + dt.timedelta(hours=5)),
    )
    rows = db.execute(
        "SELECT fetched_on, sizes_in_stock FROM raw_availability "
        "WHERE store_id = 7 AND product_id = 'P1' ORDER BY fetched_on"
    ).fetchall()
    assert rows == [(dt.date(2026, 2, 13), ["XL"]), (dt.date(2026, 2, 14), ["L"])]


@pytest.mark.database("unde_staging")
def test_raw_products_upsert_statuses_and_updated_at(db: psycopg.Connection[Any]) -> None:
    upsert = (
        "INSERT INTO raw_products (source, external_id, brand, name, price, scraped_at) "
        "VALUES ('apify_zara', 'X1', 'zara', %s, 19990, now()) "
        "ON CONFLICT (source, external_id) DO UPDATE SET name = EXCLUDED.name RETURNING id, image_status"
    )
    first = db.execute(upsert, ("Dress",)).fetchone()
    second = db.execute(upsert, ("Midi dress",)).fetchone()
    assert first is not None and second is not None
    assert first == second == (first[0], "pending")
    savepoint_raises(
        db, errors.CheckViolation, "UPDATE raw_products SET image_status = 'done' WHERE id = %s", (first[0],)
    )
    db.execute(
        "UPDATE raw_products SET created_at = now() - interval '1 day', updated_at = now() - interval '1 day'"
    )
    db.execute("UPDATE raw_products SET image_status = 'uploaded' WHERE id = %s", (first[0],))
    row = db.execute("SELECT updated_at > created_at FROM raw_products WHERE id = %s", (first[0],)).fetchone()
    assert row == (True,)


# --- unde_main -----------------------------------------------------------------------------


@pytest.mark.database("unde_main")
def test_tombstone_primary_key_is_the_message_pair(db: psycopg.Connection[Any]) -> None:
    conv, msg = uuid.uuid4(), uuid.uuid4()
    insert = (
        "INSERT INTO deleted_messages_registry (conversation_id, message_id, user_id) VALUES (%s, %s, %s)"
    )
    db.execute(insert, (conv, msg, uuid.uuid4()))
    savepoint_raises(db, errors.UniqueViolation, insert, (conv, msg, uuid.uuid4()))
    db.execute(insert, (conv, uuid.uuid4(), None))  # same conversation, other message
    db.execute(insert, (uuid.uuid4(), msg, None))  # same message id, other conversation
    pk = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'deleted_messages_registry'::regclass AND contype = 'p'"
    ).fetchone()
    assert pk == ("PRIMARY KEY (conversation_id, message_id)",)
    # replay on restore is idempotent
    db.execute(insert + " ON CONFLICT DO NOTHING", (conv, msg, None))


def vec(rng: random.Random, dim: int) -> str:
    return "[" + ",".join(f"{rng.gauss(0, 1):.5f}" for _ in range(dim)) + "]"


@pytest.mark.database("unde_main")
def test_sku_image_embeddings_unique_per_sku_image_and_knn(db: psycopg.Connection[Any]) -> None:
    rng = random.Random(1)
    insert = (
        "INSERT INTO unde_ai.sku_image_embeddings "
        "(sku, brand, image_url, image_index, embedding, model_version) "
        "VALUES (%s, 'zara', %s, %s, %s, 'fashionclip-2.0')"
    )
    db.execute(insert, ("SKU1", "https://s3/originals/zara/SKU1/1.jpg", 0, vec(rng, 512)))
    db.execute(insert, ("SKU1", "https://s3/originals/zara/SKU1/2.jpg", 1, vec(rng, 512)))
    db.execute(insert, ("SKU2", "https://s3/originals/zara/SKU2/1.jpg", 0, vec(rng, 512)))
    savepoint_raises(db, errors.UniqueViolation, insert, ("SKU1", "https://s3/other.jpg", 0, vec(rng, 512)))
    savepoint_raises(db, errors.DataException, insert, ("SKU3", "https://s3/x.jpg", 0, vec(rng, 3)))
    # re-embedding with a new model updates the row in place
    db.execute(
        insert + " ON CONFLICT (sku, image_index) DO UPDATE SET embedding = EXCLUDED.embedding, "
        "model_version = 'fashionclip-2.1'",
        ("SKU1", "https://s3/originals/zara/SKU1/1.jpg", 0, vec(rng, 512)),
    )
    assert db.execute("SELECT count(*) FROM unde_ai.sku_image_embeddings").fetchone() == (3,)
    indexes = {
        r[0]: r[1]
        for r in db.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'unde_ai' AND tablename = 'sku_image_embeddings'"
        ).fetchall()
    }
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["idx_sku_image_embeddings_hnsw"]
    assert "(brand)" in indexes["idx_sku_image_embeddings_brand"]
    rows = db.execute(
        "SELECT e.sku FROM unde_ai.sku_image_embeddings e ORDER BY e.embedding <=> %s::vector LIMIT 2",
        (vec(rng, 512),),
    ).fetchall()
    assert len(rows) == 2


@pytest.mark.database("unde_main")
def test_routing_recognition_and_events_constraints(db: psycopg.Connection[Any]) -> None:
    user = uuid.uuid4()
    db.execute("INSERT INTO routing_table (user_id, shard_index) VALUES (%s, 0)", (user,))
    savepoint_raises(
        db, errors.UniqueViolation, "INSERT INTO routing_table (user_id, shard_index) VALUES (%s, 1)", (user,)
    )
    savepoint_raises(
        db,
        errors.CheckViolation,
        "INSERT INTO routing_table (user_id, shard_index) VALUES (%s, -1)",
        (uuid.uuid4(),),
    )
    rid = db.execute(
        "INSERT INTO recognition_requests (user_id, photo_url) VALUES (%s, 'https://s3/u.jpg') RETURNING id",
        (user,),
    ).fetchone()
    assert rid is not None
    db.execute(
        "UPDATE recognition_requests SET status = 'completed', detection_time_ms = 300, "
        'step_timings_ms = \'{"detect": 300, "retrieve": 40}\' WHERE id = %s',
        (rid[0],),
    )
    savepoint_raises(
        db,
        errors.CheckViolation,
        "INSERT INTO events (mall_id, kind, title, starts_at, ends_at) "
        "VALUES ('m', 'sale', 't', now(), now() - interval '1 hour')",
    )


# --- unde_shard ----------------------------------------------------------------------------


@pytest.mark.database("unde_shard")
def test_messages_has_64_hash_partitions_with_inline_embeddings(db: psycopg.Connection[Any]) -> None:
    parts = db.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'messages'::regclass ORDER BY c.relname"
    ).fetchall()
    assert [p[0] for p in parts] == [f"messages_p{i:02d}" for i in range(64)]
    assert parts[5][1] == "FOR VALUES WITH (modulus 64, remainder 5)"
    key = db.execute("SELECT pg_get_partkeydef('messages'::regclass)").fetchone()
    assert key == ("HASH (conversation_id)",)
    storages = db.execute(
        "SELECT DISTINCT a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE a.attname = 'embedding' AND (c.relname = 'messages' OR c.relname LIKE 'messages\\_p%')"
    ).fetchall()
    assert storages == [("m",)]
    # the design decision: no HNSW on messages (exact per-conversation search instead)
    hnsw = db.execute(
        "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'messages%%' AND indexdef LIKE '%%USING hnsw%%'"
    ).fetchone()
    assert hnsw == (0,)


def plan_text(conn: psycopg.Connection[Any], query: str, params: Any = None) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + query, params).fetchall())


@pytest.mark.database("unde_shard")
def test_conversation_filter_prunes_to_one_partition(db: psycopg.Connection[Any]) -> None:
    conv = uuid.uuid4()
    plan = plan_text(
        db,
        "SELECT id, content FROM messages WHERE conversation_id = %s ORDER BY created_at DESC LIMIT 50",
        (conv,),
    )
    assert len(set(re.findall(r"messages_p\d\d", plan))) == 1, plan
    # a generic (prepared) plan prunes at executor start-up: 63 of 64 subplans removed
    db.execute("PREPARE recent(uuid) AS SELECT id FROM messages WHERE conversation_id = $1 LIMIT 5")
    db.execute("SET plan_cache_mode = force_generic_plan")
    generic = "\n".join(
        r[0]
        for r in db.execute(sql_literal("EXPLAIN (ANALYZE, COSTS OFF) EXECUTE recent({})", conv)).fetchall()
    )
    assert "Subplans Removed: 63" in generic, generic
    db.execute("DEALLOCATE recent")
    db.execute("RESET plan_cache_mode")


def sql_literal(template: str, value: uuid.UUID) -> str:
    return template.format(f"'{value}'")


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def vec_text(values: list[float]) -> str:
    return "[" + ",".join(f"{v:.6f}" for v in values) + "]"


def insert_message(
    conn: psycopg.Connection[Any], conv: uuid.UUID, role: str, content: str, **cols: Any
) -> uuid.UUID:
    msg = uuid.uuid4()
    names = ["id", "conversation_id", "role", "content", *cols]
    placeholders = ["%s"] * len(names)
    conn.execute(
        f"INSERT INTO messages ({', '.join(names)}) VALUES ({', '.join(placeholders)})",  # noqa: S608
        [msg, conv, role, content, *cols.values()],
    )
    return msg


@pytest.mark.database("unde_shard")
def test_canonical_hybrid_search_is_exact_and_prunes(db: psycopg.Connection[Any]) -> None:
    rng = random.Random(7)
    query_text = HYBRID_SEARCH.read_text()
    target, other = uuid.uuid4(), uuid.uuid4()
    centre = [rng.gauss(0, 1) for _ in range(1024)]
    expected: list[tuple[float, uuid.UUID]] = []
    now = dt.datetime.now(UTC)
    for conv in (target, other):
        for i in range(60):
            emb = unit([c + rng.gauss(0, 0.8) for c in centre])
            msg = insert_message(
                db,
                conv,
                "user",
                f"хочу платье zara {i}",
                embedding=vec_text(emb),
                is_embeddable=True,
                memory_type="preference",
                memory_confidence=0.8,
                created_at=now - dt.timedelta(days=i),
            )
            if conv == target:
                cosine = sum(a * b for a, b in zip(emb, unit(centre), strict=True))
                expected.append((1 - cosine, msg))
    forgotten = insert_message(
        db,
        target,
        "user",
        "забудь это платье",
        embedding=vec_text(unit(centre)),
        is_embeddable=True,
        is_forgotten=True,
    )
    artefact = insert_message(
        db, target, "assistant", "Вот что я нашла!", response_description="mango тренч хаки SKU 42"
    )
    params = {
        "conversation_id": target,
        "query_embedding": vec_text(unit(centre)),
        "query_text": "тренч",
        "similarity_threshold": 0.5,
        "top_k": 15,
    }

    rows = db.execute(query_text, params).fetchall()
    assert len(rows) == 15
    ids = [r[0] for r in rows]
    assert forgotten not in ids
    head = query_text.partition("-- final ranking")[0]
    fts = db.execute(head + "SELECT id FROM fts_results", params).fetchall()  # noqa: S608
    assert fts == [(artefact,)]  # FTS finds the assistant artefact through response_description

    # a short conversation: the artefact reaches the final ranking with its description as card
    short = uuid.uuid4()
    insert_message(db, short, "user", "нужен тренч", embedding=vec_text(unit(centre)), is_embeddable=True)
    card = insert_message(db, short, "assistant", "Вот что я нашла!", response_description="cos тренч SKU 7")
    short_rows = db.execute(query_text, {**params, "conversation_id": short}).fetchall()
    assert {r[0]: r[1] for r in short_rows}[card] == "cos тренч SKU 7"
    assert len(short_rows) == 2

    # the vector branch is the exact top-20 of this conversation only
    branch = db.execute(head + "SELECT id FROM vector_results ORDER BY vec_score DESC", params).fetchall()  # noqa: S608
    assert [r[0] for r in branch] == [m for _, m in sorted(expected)[:20]]

    plan = plan_text(db, query_text, params)
    assert set(re.findall(r"messages_p\d\d", plan)) == {
        db.execute(
            "SELECT tableoid::regclass::text FROM messages WHERE conversation_id = %s LIMIT 1", (target,)
        ).fetchone()[0]  # type: ignore[index]
    }
    assert "hnsw" not in plan.lower()


@pytest.mark.database("unde_shard")
def test_tsv_forget_and_enrichment_columns(db: psycopg.Connection[Any]) -> None:
    conv = uuid.uuid4()
    msg = insert_message(db, conv, "user", "Обожаю Zara 38", response_description=None)
    assert db.execute("SELECT tsv::text FROM messages WHERE id = %s", (msg,)).fetchone() == (
        "'38':3 'zara':2 'обожаю':1",
    )
    # 6-hourly enrichment_ttl_recovery picks it once it is an hour old
    db.execute("UPDATE messages SET created_at = now() - interval '2 hours' WHERE id = %s", (msg,))
    recovery = (
        "SELECT conversation_id, id FROM messages WHERE role = 'user' AND enrichment_status = 'pending' "
        "AND enrichment_attempts < 3 AND created_at < now() - interval '1 hour' ORDER BY created_at LIMIT 500"
    )
    assert (conv, msg) in db.execute(recovery).fetchall()
    db.execute(
        "UPDATE messages SET enrichment_attempts = 3, enrichment_status = 'failed' WHERE id = %s", (msg,)
    )
    assert (conv, msg) not in db.execute(recovery).fetchall()
    # hard delete (spec 02 §14)
    db.execute(
        "UPDATE messages SET content = '[deleted]', embedding = NULL, memory_snippet = NULL, "
        "memory_confidence = NULL, response_description = NULL, reply_to_id = NULL, "
        "is_forgotten = TRUE, deleted_at = now() WHERE conversation_id = %s AND id = %s",
        (conv, msg),
    )
    assert db.execute("SELECT tsv::text, content FROM messages WHERE id = %s", (msg,)).fetchone() == (
        "'deleted':1",
        "[deleted]",
    )
    savepoint_raises(db, errors.CheckViolation, "UPDATE messages SET role = 'bot' WHERE id = %s", (msg,))
    # verify-and-replay: client-generated id, re-insert is a no-op
    db.execute(
        "INSERT INTO messages (id, conversation_id, role, content) VALUES (%s, %s, 'user', 'x') "
        "ON CONFLICT DO NOTHING",
        (msg, conv),
    )


@pytest.mark.database("unde_shard")
def test_user_knowledge_encryption_fields_and_life_event_expiry(db: psycopg.Connection[Any]) -> None:
    user = uuid.uuid4()
    db.execute("INSERT INTO user_keys (user_id, encrypted_dek) VALUES (%s, %s)", (user, b"\x01" * 60))
    insert = (
        "INSERT INTO user_knowledge (user_id, encrypted_data, iv, auth_tag, knowledge_type, expires_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id"
    )
    past = dt.datetime.now(UTC) - dt.timedelta(days=1)
    expired = db.execute(insert, (user, b"c", b"\x00" * 12, b"\x00" * 16, "life_event", past)).fetchone()
    kept = db.execute(insert, (user, b"c", b"\x00" * 12, b"\x00" * 16, "budget", None)).fetchone()
    assert expired is not None and kept is not None
    savepoint_raises(
        db, errors.CheckViolation, insert, (user, b"c", b"\x00" * 16, b"\x00" * 16, "budget", None)
    )
    savepoint_raises(
        db, errors.CheckViolation, insert, (user, b"c", b"\x00" * 12, b"\x00" * 8, "budget", None)
    )
    savepoint_raises(
        db,
        errors.ForeignKeyViolation,
        insert,
        (uuid.uuid4(), b"c", b"\x00" * 12, b"\x00" * 16, "budget", None),
    )
    # life_event_expiry at 03:00
    changed = db.execute("UPDATE user_knowledge SET is_active = FALSE WHERE is_active AND expires_at < now()")
    assert changed.rowcount == 1
    active = db.execute("SELECT id FROM user_knowledge WHERE user_id = %s AND is_active", (user,)).fetchall()
    assert active == [(kept[0],)]
    # crypto-shredding: dropping the key drops the ciphertexts
    db.execute("DELETE FROM user_keys WHERE user_id = %s", (user,))
    assert db.execute("SELECT count(*) FROM user_knowledge WHERE user_id = %s", (user,)).fetchone() == (0,)


@pytest.mark.database("unde_shard")
def test_persona_tables(db: psycopg.Connection[Any]) -> None:
    user = uuid.uuid4()
    db.execute("INSERT INTO relationship_stage (user_id, stage) VALUES (%s, 3)", (user,))
    savepoint_raises(
        db, errors.CheckViolation, "UPDATE relationship_stage SET stage = 4 WHERE user_id = %s", (user,)
    )
    db.execute(
        "INSERT INTO signal_daily_deltas (user_id, field, total_delta) VALUES (%s, 'humor', 0.1)", (user,)
    )
    savepoint_raises(
        db,
        errors.UniqueViolation,
        "INSERT INTO signal_daily_deltas (user_id, field) VALUES (%s, 'humor')",
        (user,),
    )
    db.execute(
        "INSERT INTO persona_temp_blocks (user_id, key, until, reason) "
        "VALUES (%s, 'humor', now() + interval '1 day', 'x')",
        (user,),
    )
