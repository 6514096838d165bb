"""Test databases with the repository's real migrations: ``migrate_database(pg, "shard", "unde_shard")``
creates the database in a test PostgreSQL (:func:`unde_testkit.testing.postgres_server`, the ``pg``
fixture) and applies ``files/sql/<schema>`` with the runner the postgresql role uses
(``roles/postgresql/library/unde_sql_migrate.py``), exactly as in production."""

from __future__ import annotations

import warnings

import psycopg.conninfo

from unde_testkit.loaders import repo_root, sql_runner
from unde_testkit.testing import PostgresHandle

__all__ = ["apply_migrations", "migrate_database", "repo_root"]


def migrate_database(pg: PostgresHandle, database: str, schema: str) -> str:
    """(Re)create ``database`` in ``pg`` and apply files/sql/``schema`` (``unde_main``,
    ``unde_shard``, ``unde_staging``); return its DSN."""
    if not (repo_root() / "files/sql" / schema).is_dir():
        raise ValueError(f"no migrations directory files/sql/{schema}")
    dsn = pg.create_database(database)
    apply_migrations(dsn, schema)
    return dsn


def apply_migrations(dsn: str, schema: str) -> None:
    """Apply files/sql/``schema`` to the database of ``dsn`` (the test server's superuser over its
    Unix socket) with psql, as the postgresql role does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
        from pgserver._commands import POSTGRES_BIN_PATH
    directory = repo_root() / "files/sql" / schema
    if not directory.is_dir():
        raise ValueError(f"no migrations directory files/sql/{schema}")
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host = params.get("host")
    if not host or not str(host).startswith("/"):
        raise ValueError(f"test DSN without a socket host: {dsn}")
    runner = sql_runner()
    user = str(params.get("user", "postgres"))
    run = runner.subprocess_runner(
        runner.Connection(database=str(params["dbname"]), host=str(host), user=user),
        psql=str(POSTGRES_BIN_PATH / "psql"),
        timeout=120,
    )
    runner.migrate(run, directory)
