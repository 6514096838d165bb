"""Fixtures of the context agent's tests: the production schema (unde_main) migrated into the
test PostgreSQL by the same runner the postgresql role uses (files/sql/unde_main)."""

from __future__ import annotations

import pytest

from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database


@pytest.fixture(scope="session")
def main_dsn(pg: PostgresHandle) -> str:
    return migrate_database(pg, "context_main", "unde_main")
