"""A real PostgreSQL 16 + pgvector (the ``pgserver`` wheel) for the SQL-layer tests, the migration
runner imported from ``roles/postgresql/library``, and the three databases migrated once."""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg import sql
from unde_testkit.loaders import sql_runner

REPO = Path(__file__).resolve().parents[2]
SQL_DIR = REPO / "files" / "sql"
DATABASES = ("unde_staging", "unde_main", "unde_shard")


def load_runner() -> ModuleType:
    return sql_runner()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "database(name): the migrated database a test connects to")


@dataclass(frozen=True)
class Postgres:
    """A running test server: superuser ``postgres`` over a Unix socket (trust auth)."""

    socket_dir: str
    psql: str
    runner: ModuleType

    def connect(
        self, database: str = "postgres", user: str = "postgres", **kwargs: Any
    ) -> psycopg.Connection[Any]:
        return psycopg.connect(host=self.socket_dir, dbname=database, user=user, **kwargs)

    def run_psql(self, database: str, user: str = "postgres") -> Callable[..., Any]:
        run: Callable[..., Any] = self.runner.subprocess_runner(
            self.runner.Connection(database=database, host=self.socket_dir, user=user),
            psql=self.psql,
            timeout=60,
        )
        return run

    def create_database(self, name: str) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def migrate(self, database: str, directory: Path | None = None, **kwargs: Any) -> Any:
        return self.runner.migrate(self.run_psql(database), directory or SQL_DIR / database, **kwargs)


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    # Not under pytest's basetemp: as root, pgserver runs the server as its own user "pgserver",
    # and a concurrent pytest run resets /tmp/pytest-of-root to 0700 (the server could no longer
    # be stopped cleanly).
    base = Path(tempfile.mkdtemp(prefix="unde-sql-tests-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.postgres_server import get_server

        server = get_server(base / "data", cleanup_mode="stop")
    match = re.search(r"host=([^&]+)", server.get_uri())
    assert match is not None
    try:
        yield Postgres(match.group(1), str(POSTGRES_BIN_PATH / "psql"), load_runner())
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated(pg: Postgres) -> Postgres:
    """unde_staging, unde_main and unde_shard created empty and migrated with files/sql."""
    for database in DATABASES:
        pg.create_database(database)
        pg.migrate(database)
    return pg


_counter = iter(range(1_000_000))


@pytest.fixture
def scratch_db(pg: Postgres) -> str:
    """A fresh empty database for one test."""
    name = f"scratch_{next(_counter)}"
    pg.create_database(name)
    return name
