"""Least-privilege grants of files/sql: the login users are created as the Ansible role does (LOGIN,
member of the migration's group role unde_<db>_<user>), then each tries allowed and forbidden
statements. Every statement runs in a transaction that is rolled back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from sql.conftest import Postgres

V512 = "'[" + ",".join(["0.1"] * 512) + "]'"

# login user -> group roles it is a member of (per database)
LOGINS: dict[str, list[str]] = {
    "apify": ["unde_staging_apify"],
    "downloader": ["unde_staging_downloader"],
    "ximilar": ["unde_staging_ximilar"],
    "collage": ["unde_staging_collage"],
    "scraper": ["unde_staging_scraper", "unde_main_scraper"],
    "recognition": ["unde_staging_recognition", "unde_main_recognition"],
    "orchestrator": ["unde_main_orchestrator"],
    "app": ["unde_main_app"],
    "embed_writer": ["unde_main_embed_writer"],
    "pgvector_reader": ["unde_main_pgvector_reader"],
    "readonly": ["unde_main_readonly", "unde_shard_readonly"],
    "app_rw": ["unde_shard_app_rw"],
    "knowledge_rw": ["unde_shard_knowledge_rw"],
    "persona_rw": ["unde_shard_persona_rw"],
}

OK, DENIED = True, False
PRODUCT = (
    "INSERT INTO raw_products (source, external_id, brand, name, price, scraped_at) "
    "VALUES ('apify_zara', 'G1', 'zara', 'Dress', 100, now())"
)

CASES: list[tuple[str, str, str, bool]] = [
    # --- unde_staging (spec 02 §6) ---
    (
        "unde_staging",
        "apify",
        PRODUCT
        + (
            " ON CONFLICT (source, external_id) DO UPDATE SET name = EXCLUDED.name, price = "
            "EXCLUDED.price, image_status = 'pending'"
        ),
        OK,
    ),
    (
        "unde_staging",
        "apify",
        "INSERT INTO scraper_logs (scraper_name, status, started_at) VALUES ('apify_zara', 'running', now())",
        OK,
    ),
    (
        "unde_staging",
        "apify",
        "UPDATE raw_products SET image_urls = '[]' WHERE id = 1",
        DENIED,
    ),
    (
        "unde_staging",
        "apify",
        "DELETE FROM raw_products WHERE id = 1",
        DENIED,
    ),
    (
        "unde_staging",
        "apify",
        "SELECT * FROM raw_availability",
        DENIED,
    ),
    (
        "unde_staging",
        "downloader",
        "SELECT id, external_id, brand, original_image_urls FROM raw_products WHERE "
        "image_status = 'pending' LIMIT 200",
        OK,
    ),
    (
        "unde_staging",
        "downloader",
        "UPDATE raw_products SET image_urls = '[]', image_status = 'uploaded', "
        "download_attempts = download_attempts + 1 WHERE id = 1",
        OK,
    ),
    (
        "unde_staging",
        "downloader",
        "UPDATE raw_products SET image_status = 'error', error_message = 'timeout' WHERE id = 1",
        OK,
    ),
    (
        "unde_staging",
        "downloader",
        "UPDATE raw_products SET name = 'x' WHERE id = 1",
        DENIED,
    ),
    (
        "unde_staging",
        "downloader",
        "UPDATE raw_products SET updated_at = now() WHERE id = 1",
        DENIED,
    ),
    (
        "unde_staging",
        "downloader",
        "UPDATE raw_products SET ximilar_status = 'synced' WHERE id = 1",
        DENIED,
    ),
    (
        "unde_staging",
        "downloader",
        PRODUCT,
        DENIED,
    ),
    (
        "unde_staging",
        "downloader",
        "DELETE FROM raw_products",
        DENIED,
    ),
    (
        "unde_staging",
        "ximilar",
        "UPDATE raw_products SET ximilar_status = 'synced', ximilar_synced_at = now() WHERE id = 1",
        OK,
    ),
    (
        "unde_staging",
        "ximilar",
        "UPDATE raw_products SET ximilar_status = 'error', ximilar_error_message = 'x', "
        "ximilar_attempts = ximilar_attempts + 1 WHERE id = 1",
        OK,
    ),
    (
        "unde_staging",
        "ximilar",
        "UPDATE raw_products SET image_status = 'uploaded' WHERE id = 1",
        DENIED,
    ),
    (
        "unde_staging",
        "ximilar",
        "UPDATE raw_products SET error_message = 'x' WHERE id = 1",
        DENIED,
    ),
    (
        "unde_staging",
        "collage",
        "UPDATE raw_products SET collage_url = 'https://s3/c.jpg', image_status = "
        "'collage_ready' WHERE id = 1 AND image_status = 'uploaded'",
        OK,
    ),
    (
        "unde_staging",
        "collage",
        "UPDATE raw_products SET ximilar_status = 'synced' WHERE id = 1",
        DENIED,
    ),
    (
        "unde_staging",
        "scraper",
        "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, "
        "fetched_at) VALUES ('zara', 1, 'G1', '[]', now())",
        OK,
    ),
    (
        "unde_staging",
        "scraper",
        "DELETE FROM raw_availability WHERE fetched_at < now() - interval '30 days'",
        OK,
    ),
    (
        "unde_staging",
        "scraper",
        "UPDATE raw_products SET sync_status = 'synced', synced_at = now() WHERE id = 1",
        OK,
    ),
    (
        "unde_staging",
        "scraper",
        "INSERT INTO raw_stores (brand, store_id, name) VALUES ('zara', 1, 'Dostyk Plaza')",
        OK,
    ),
    (
        "unde_staging",
        "recognition",
        "SELECT product_id, sizes_in_stock FROM raw_availability WHERE store_id = 1",
        OK,
    ),
    (
        "unde_staging",
        "recognition",
        "SELECT * FROM raw_products",
        DENIED,
    ),
    (
        "unde_staging",
        "recognition",
        "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, "
        "fetched_at) VALUES ('zara', 1, 'G1', '[]', now())",
        DENIED,
    ),
    (
        "unde_staging",
        "scraper",
        "CREATE TABLE public.sneaky (id int)",
        DENIED,
    ),
    # --- unde_main ---
    (
        "unde_main",
        "scraper",
        "INSERT INTO products (sku, brand, name) VALUES ('G1', 'zara', 'Dress') ON "
        "CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, synced_at = now()",
        OK,
    ),
    (
        "unde_main",
        "scraper",
        "DELETE FROM products",
        DENIED,
    ),
    (
        "unde_main",
        "scraper",
        "SELECT * FROM routing_table",
        DENIED,
    ),
    (
        "unde_main",
        "recognition",
        "INSERT INTO recognition_requests (user_id, photo_url) VALUES (gen_random_uuid(), 'x') RETURNING id",
        OK,
    ),
    (
        "unde_main",
        "recognition",
        "UPDATE recognition_requests SET final_matches = '[]', status = 'completed', "
        "step_timings_ms = '{\"rerank\": 1200}' WHERE id = gen_random_uuid()",
        OK,
    ),
    (
        "unde_main",
        "recognition",
        "SELECT sku, price, availability FROM products WHERE sku = 'G1'",
        OK,
    ),
    (
        "unde_main",
        "recognition",
        "UPDATE products SET price = 1",
        DENIED,
    ),
    (
        "unde_main",
        "recognition",
        "SELECT * FROM routing_table",
        DENIED,
    ),
    (
        "unde_main",
        "orchestrator",
        "SELECT shard_index FROM routing_table WHERE user_id = gen_random_uuid()",
        OK,
    ),
    (
        "unde_main",
        "orchestrator",
        "INSERT INTO deleted_messages_registry (conversation_id, message_id, user_id) "
        "VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid())",
        OK,
    ),
    (
        "unde_main",
        "orchestrator",
        "DELETE FROM deleted_messages_registry",
        DENIED,
    ),
    (
        "unde_main",
        "orchestrator",
        "UPDATE routing_table SET shard_index = 1",
        DENIED,
    ),
    (
        "unde_main",
        "app",
        "INSERT INTO routing_table (user_id, shard_index) VALUES (gen_random_uuid(), 0)",
        OK,
    ),
    (
        "unde_main",
        "app",
        "UPDATE recognition_requests SET user_feedback = '{\"ok\": true}' WHERE id = gen_random_uuid()",
        OK,
    ),
    (
        "unde_main",
        "app",
        "UPDATE recognition_requests SET final_matches = '[]' WHERE id = gen_random_uuid()",
        DENIED,
    ),
    (
        "unde_main",
        "app",
        "INSERT INTO products (sku, brand, name) VALUES ('G2', 'zara', 'x')",
        DENIED,
    ),
    (
        "unde_main",
        "embed_writer",
        "INSERT INTO unde_ai.sku_image_embeddings (sku, brand, image_url, image_index, "
        "embedding, model_version) VALUES ('G1', 'zara', 'u', 0, {v512}, 'm') ON CONFLICT"
        " (sku, image_index) DO UPDATE SET embedding = EXCLUDED.embedding, model_version "
        "= EXCLUDED.model_version",
        OK,
    ),
    (
        "unde_main",
        "embed_writer",
        "SELECT sku, image_urls FROM products",
        OK,
    ),
    (
        "unde_main",
        "embed_writer",
        "DELETE FROM unde_ai.sku_image_embeddings",
        DENIED,
    ),
    (
        "unde_main",
        "embed_writer",
        "SELECT * FROM routing_table",
        DENIED,
    ),
    (
        "unde_main",
        "pgvector_reader",
        "SELECT e.sku, p.price FROM unde_ai.sku_image_embeddings e JOIN products p ON "
        "p.sku = e.sku ORDER BY e.embedding <=> {v512} LIMIT 50",
        OK,
    ),
    (
        "unde_main",
        "pgvector_reader",
        "INSERT INTO unde_ai.sku_image_embeddings (sku, brand, image_url, image_index, "
        "embedding, model_version) VALUES ('G1', 'zara', 'u', 0, {v512}, 'm')",
        DENIED,
    ),
    (
        "unde_main",
        "readonly",
        "SELECT title, starts_at FROM events WHERE mall_id = 'dubai-hills-mall'",
        OK,
    ),
    (
        "unde_main",
        "readonly",
        "SELECT sku FROM products",
        OK,
    ),
    (
        "unde_main",
        "readonly",
        "INSERT INTO events (mall_id, kind, title, starts_at, ends_at) VALUES ('m', "
        "'sale', 't', now(), now())",
        DENIED,
    ),
    (
        "unde_main",
        "readonly",
        "SELECT * FROM recognition_requests",
        DENIED,
    ),
    (
        "unde_main",
        "readonly",
        "SELECT * FROM unde_ai.sku_image_embeddings",
        DENIED,
    ),
    (
        "unde_main",
        "app",
        "CREATE TABLE public.sneaky (id int)",
        DENIED,
    ),
    # --- unde_shard (spec 02 §14) ---
    (
        "unde_shard",
        "app_rw",
        "INSERT INTO messages (conversation_id, role, content) VALUES (gen_random_uuid(), 'user', 'hi')",
        OK,
    ),
    (
        "unde_shard",
        "app_rw",
        "UPDATE messages SET is_forgotten = TRUE, embedding = NULL WHERE conversation_id = gen_random_uuid()",
        OK,
    ),
    (
        "unde_shard",
        "app_rw",
        "SELECT encrypted_dek FROM user_keys",
        OK,
    ),
    (
        "unde_shard",
        "app_rw",
        "DELETE FROM conversations WHERE user_id = gen_random_uuid()",
        OK,
    ),
    (
        "unde_shard",
        "app_rw",
        "SELECT * FROM messages_p00",
        DENIED,
    ),
    (
        "unde_shard",
        "app_rw",
        "CREATE TABLE public.sneaky (id int)",
        DENIED,
    ),
    (
        "unde_shard",
        "knowledge_rw",
        "UPDATE user_knowledge SET is_active = FALSE WHERE is_active AND expires_at < now()",
        OK,
    ),
    (
        "unde_shard",
        "knowledge_rw",
        "INSERT INTO user_keys (user_id, encrypted_dek) VALUES (gen_random_uuid(), '\\x00')",
        OK,
    ),
    (
        "unde_shard",
        "knowledge_rw",
        "SELECT * FROM messages",
        DENIED,
    ),
    (
        "unde_shard",
        "persona_rw",
        "SELECT knowledge_type, encrypted_data FROM user_knowledge WHERE user_id = gen_random_uuid()",
        OK,
    ),
    (
        "unde_shard",
        "persona_rw",
        "UPDATE user_knowledge SET is_active = FALSE",
        DENIED,
    ),
    (
        "unde_shard",
        "persona_rw",
        "INSERT INTO relationship_stage (user_id, stage) VALUES (gen_random_uuid(), 1) ON"
        " CONFLICT (user_id) DO UPDATE SET stage = EXCLUDED.stage",
        OK,
    ),
    (
        "unde_shard",
        "persona_rw",
        "DELETE FROM persona_temp_blocks WHERE until < now()",
        OK,
    ),
    (
        "unde_shard",
        "persona_rw",
        "INSERT INTO signal_daily_deltas (user_id, field, total_delta) VALUES "
        "(gen_random_uuid(), 'humor', 0.1)",
        OK,
    ),
    (
        "unde_shard",
        "persona_rw",
        "SELECT * FROM messages",
        DENIED,
    ),
    (
        "unde_shard",
        "persona_rw",
        "SELECT * FROM user_keys",
        DENIED,
    ),
    (
        "unde_shard",
        "readonly",
        "SELECT count(*) FROM messages",
        OK,
    ),
    (
        "unde_shard",
        "readonly",
        "SELECT * FROM user_keys",
        DENIED,
    ),
    (
        "unde_shard",
        "readonly",
        "INSERT INTO messages (conversation_id, role, content) VALUES (gen_random_uuid(), 'user', 'x')",
        DENIED,
    ),
    # the persona flush journal (0005)
    (
        "unde_shard",
        "persona_rw",
        "INSERT INTO persona_applied_flushes (user_id, exchange_id, applied_with, result)"
        " VALUES (gen_random_uuid(), 'e1', 'e1', '{}')",
        OK,
    ),
    (
        "unde_shard",
        "persona_rw",
        "DELETE FROM persona_applied_flushes WHERE applied_at < now() - interval '72 hours'",
        OK,
    ),
    (
        "unde_shard",
        "readonly",
        "SELECT count(*) FROM persona_applied_flushes",
        OK,
    ),
    (
        "unde_shard",
        "readonly",
        "DELETE FROM persona_applied_flushes",
        DENIED,
    ),
    (
        "unde_shard",
        "knowledge_rw",
        "SELECT * FROM persona_applied_flushes",
        DENIED,
    ),
]


@pytest.fixture(scope="session")
def logins(migrated: Postgres) -> Iterator[dict[tuple[str, str], psycopg.Connection[Any]]]:
    """The LOGIN users (as the Ansible role creates them), with one connection per database."""
    with migrated.connect(autocommit=True) as admin:
        for user, groups in LOGINS.items():
            admin.execute(f"DROP ROLE IF EXISTS {user}")
            admin.execute(f"CREATE ROLE {user} LOGIN IN ROLE {', '.join(groups)}")
        admin.execute("DROP ROLE IF EXISTS replicator")
        admin.execute("CREATE ROLE replicator LOGIN REPLICATION")
        admin.execute("DROP ROLE IF EXISTS stranger")
        admin.execute("CREATE ROLE stranger LOGIN")
    conns: dict[tuple[str, str], psycopg.Connection[Any]] = {}
    try:
        yield conns
    finally:
        for conn in conns.values():
            conn.close()


def connection(
    pg: Postgres, pool: dict[tuple[str, str], psycopg.Connection[Any]], database: str, user: str
) -> psycopg.Connection[Any]:
    key = (database, user)
    if key not in pool:
        pool[key] = pg.connect(database, user=user)
    return pool[key]


@pytest.mark.parametrize(
    ("database", "user", "statement", "allowed"),
    CASES,
    ids=[
        f"{db.removeprefix('unde_')}-{user}-{'ok' if ok else 'denied'}-{i}"
        for i, (db, user, _, ok) in enumerate(CASES)
    ],
)
def test_privileges(
    migrated: Postgres,
    logins: dict[tuple[str, str], psycopg.Connection[Any]],
    database: str,
    user: str,
    statement: str,
    allowed: bool,
) -> None:
    conn = connection(migrated, logins, database, user)
    statement = statement.replace("{v512}", V512)
    with conn.transaction(force_rollback=True):
        if allowed:
            conn.execute(statement)
        else:
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)


@pytest.mark.parametrize("database", ["unde_staging", "unde_main", "unde_shard"])
def test_nobody_else_connects(migrated: Postgres, logins: object, database: str) -> None:
    """CONNECT is revoked from PUBLIC: a login outside the groups (and replicator) cannot connect."""
    for user in ("stranger", "replicator"):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            migrated.connect(database, user=user).close()


def test_users_of_one_database_cannot_connect_to_another(migrated: Postgres, logins: object) -> None:
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        migrated.connect("unde_shard", user="downloader").close()
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        migrated.connect("unde_staging", user="persona_rw").close()


def test_column_limited_writer_still_moves_updated_at(migrated: Postgres, logins: object) -> None:
    """downloader has no UPDATE on updated_at; the trigger maintains it."""
    with migrated.connect("unde_staging", autocommit=True) as admin:
        row = admin.execute(
            "INSERT INTO raw_products (source, external_id, brand, scraped_at, updated_at) "
            "VALUES ('apify_zara', 'TRIG1', 'zara', now(), now() - interval '1 day') RETURNING id"
        ).fetchone()
        assert row is not None
        try:
            with migrated.connect("unde_staging", user="downloader", autocommit=True) as conn:
                conn.execute("UPDATE raw_products SET image_status = 'uploaded' WHERE id = %s", (row[0],))
            fresh = admin.execute(
                "SELECT updated_at > now() - interval '1 minute' FROM raw_products WHERE id = %s", (row[0],)
            ).fetchone()
            assert fresh == (True,)
        finally:
            admin.execute("DELETE FROM raw_products WHERE id = %s", (row[0],))


def test_no_public_privileges_on_schemas(migrated: Postgres) -> None:
    for database in ("unde_staging", "unde_main", "unde_shard"):
        with migrated.connect(database) as conn:
            rows = conn.execute(
                "SELECT n.nspname, has_schema_privilege('public', n.oid, 'CREATE'), "
                "has_schema_privilege('public', n.oid, 'USAGE') FROM pg_namespace n "
                "WHERE n.nspname IN ('public', 'unde_ai')"
            ).fetchall()
            assert all(not create and not usage for _, create, usage in rows), (database, rows)
            row = conn.execute(
                "SELECT has_database_privilege('public', current_database(), 'CONNECT'), "
                "has_database_privilege('public', current_database(), 'TEMP')"
            ).fetchone()
            assert row == (False, False)
