"""Fixtures of the persona agent's tests: the shard schema migrated into the test PostgreSQL by
the same runner the postgresql role uses (files/sql/unde_shard)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database


@pytest.fixture(scope="session")
def shard_dsn(pg: PostgresHandle) -> str:
    return migrate_database(pg, "persona_shard", "unde_shard")


@pytest.fixture(scope="session")
def migrate_db() -> Callable[[PostgresHandle, str, str], str]:
    """:func:`unde_testkit.testing_sql.migrate_database` for tests that start their own servers."""
    return migrate_database
