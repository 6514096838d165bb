"""The grants the GDPR erase of a user needs (llm_orchestrator.forget.erase_user): the LLM orchestrator's
production login deletes the user's routing entry and recognition log (unde_main 0005) and nothing
more; the shard's app_rw deletes every per-user table. Statements run in rolled-back transactions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from sql.conftest import Postgres

LOGINS = {
    "gdpr_orchestrator": ("unde_main", "unde_main_orchestrator"),
    "gdpr_app_rw": ("unde_shard", "unde_shard_app_rw"),
}

SHARD_TABLES = (
    "messages",
    "conversations",
    "user_knowledge",
    "user_keys",
    "relationship_stage",
    "persona_temp_blocks",
    "signal_daily_deltas",
    "persona_profiles",
    "persona_applied_flushes",
)

CASES: list[tuple[str, str, bool]] = [
    ("gdpr_orchestrator", "DELETE FROM routing_table WHERE user_id = gen_random_uuid()", True),
    ("gdpr_orchestrator", "DELETE FROM recognition_requests WHERE user_id = gen_random_uuid()", True),
    (
        "gdpr_orchestrator",
        "INSERT INTO deleted_messages_registry (conversation_id, message_id, user_id, reason) "
        "VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'gdpr_erase') "
        "ON CONFLICT DO NOTHING",
        True,
    ),
    ("gdpr_orchestrator", "SELECT photo_url FROM recognition_requests", False),
    ("gdpr_orchestrator", "UPDATE recognition_requests SET user_feedback = NULL", False),
    ("gdpr_orchestrator", "UPDATE routing_table SET shard_index = 1", False),
    (
        "gdpr_orchestrator",
        "INSERT INTO routing_table (user_id, shard_index) VALUES (gen_random_uuid(), 0)",
        False,
    ),
    ("gdpr_orchestrator", "DELETE FROM deleted_messages_registry", False),
    ("gdpr_orchestrator", "DELETE FROM products", False),
    *[
        ("gdpr_app_rw", f"DELETE FROM {table} WHERE user_id = gen_random_uuid()", True)  # noqa: S608
        for table in SHARD_TABLES[1:]
    ],
    ("gdpr_app_rw", "DELETE FROM messages WHERE conversation_id = gen_random_uuid()", True),
    (
        "gdpr_app_rw",
        "UPDATE user_keys SET encrypted_dek = '\\x00', master_key_version = 2, rotated_at = now() "
        "WHERE master_key_version <> 2",
        True,
    ),
]


@pytest.fixture(scope="module")
def conns(migrated: Postgres) -> Iterator[dict[str, psycopg.Connection[Any]]]:
    with migrated.connect(autocommit=True) as admin:
        for user, (_db, group) in LOGINS.items():
            admin.execute(f"DROP ROLE IF EXISTS {user}")
            admin.execute(f"CREATE ROLE {user} LOGIN IN ROLE {group}")
    opened = {user: migrated.connect(db, user=user) for user, (db, _group) in LOGINS.items()}
    try:
        yield opened
    finally:
        for conn in opened.values():
            conn.close()


@pytest.mark.parametrize(
    ("user", "statement", "allowed"),
    CASES,
    ids=[f"{user}-{'ok' if ok else 'denied'}-{i}" for i, (user, _, ok) in enumerate(CASES)],
)
def test_gdpr_erase_privileges(
    conns: dict[str, psycopg.Connection[Any]], user: str, statement: str, allowed: bool
) -> None:
    conn = conns[user]
    with conn.transaction(force_rollback=True):
        if allowed:
            conn.execute(statement)
        else:
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)
