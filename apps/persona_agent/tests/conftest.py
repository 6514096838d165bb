"""Fixtures of the persona agent's tests: the shard schema migrated into the test PostgreSQL by
the same runner the postgresql role uses (files/sql/unde_shard)."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from unde_common.testing import PostgresHandle

REPO = Path(__file__).resolve().parents[3]


def _runner() -> ModuleType:
    path = REPO / "roles/postgresql/library/unde_sql_migrate.py"
    spec = importlib.util.spec_from_file_location("unde_sql_migrate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("unde_sql_migrate", module)
    spec.loader.exec_module(module)
    return module


def migrate(pg: PostgresHandle, database: str, schema: str) -> str:
    """Create ``database`` and apply files/sql/<schema>; return its DSN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    dsn = pg.create_database(database)
    match = re.search(r"host=([^&]+)", dsn)
    assert match is not None, dsn
    runner = _runner()
    run = runner.subprocess_runner(
        runner.Connection(database=database, host=match.group(1), user="postgres"),
        psql=str(POSTGRES_BIN_PATH / "psql"),
        timeout=120,
    )
    runner.migrate(run, REPO / "files/sql" / schema)
    return dsn


@pytest.fixture(scope="session")
def shard_dsn(pg: PostgresHandle) -> str:
    return migrate(pg, "persona_shard", "unde_shard")


@pytest.fixture(scope="session")
def migrate_db() -> Callable[[PostgresHandle, str, str], str]:
    """:func:`migrate` for tests that start their own servers."""
    return migrate
