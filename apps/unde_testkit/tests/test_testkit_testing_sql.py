"""unde_testkit.testing_sql: databases with the repository's real migrations."""

from __future__ import annotations

import psycopg
import pytest

from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database, repo_root


def test_migrate_database_applies_every_migration(pg: PostgresHandle) -> None:
    expected = sorted(p.name for p in (repo_root() / "files/sql/unde_shard").glob("*.sql"))
    dsn = migrate_database(pg, "common_testing_sql", "unde_shard")
    with psycopg.connect(dsn) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        applied = [r[0] for r in conn.execute("SELECT filename FROM schema_migrations ORDER BY 1")]
    assert {"relationship_stage", "persona_profiles", "messages"} <= tables
    assert applied == expected
    # again: the database is recreated from scratch
    assert migrate_database(pg, "common_testing_sql", "unde_shard") == dsn


def test_unknown_schema_is_named(pg: PostgresHandle) -> None:
    with pytest.raises(ValueError, match="files/sql/unde_nowhere"):
        migrate_database(pg, "common_testing_sql_x", "unde_nowhere")
