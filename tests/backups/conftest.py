"""Real PostgreSQL (pgserver) for the backup tests: the SQL-layer fixtures of tests/sql, and the
backup runner of roles/pgbackrest loaded from its file."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from sql import conftest as sql_conftest
from sql.conftest import Postgres
from unde_testkit.loaders import load_module

# The real PostgreSQL of tests/sql (session fixture), shared rather than copied.
pg = sql_conftest.pg

REPO = Path(__file__).resolve().parents[2]
RUNBOOK_SQL = REPO / "playbooks" / "runbooks" / "sql"
RUNNER_FILE = REPO / "roles" / "pgbackrest" / "files" / "unde_backup.py"


def load_runner() -> ModuleType:
    return load_module("unde_backup", RUNNER_FILE)


@pytest.fixture(scope="session")
def runner() -> ModuleType:
    return load_runner()


@pytest.fixture
def shard_db(pg: Postgres) -> str:
    """A freshly migrated unde_shard copy for one test (the restored shard)."""
    name = "restored_shard"
    pg.create_database(name)
    pg.migrate(name, REPO / "files" / "sql" / "unde_shard")
    return name


@pytest.fixture(scope="session")
def main_db(pg: Postgres) -> str:
    """unde_main (production) with the tombstone registry."""
    name = "prod_main"
    pg.create_database(name)
    pg.migrate(name, REPO / "files" / "sql" / "unde_main")
    return name
