"""Test databases with the repository's real migrations: ``migrate_database(pg, "shard", "unde_shard")``
creates the database in a test PostgreSQL (:func:`unde_common.testing.postgres_server`, the ``pg``
fixture) and applies ``files/sql/<schema>`` with the runner the postgresql role uses
(``roles/postgresql/library/unde_sql_migrate.py``), exactly as in production."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType

from unde_common.testing import PostgresHandle

__all__ = ["migrate_database", "repo_root"]

_RUNNER = Path("roles/postgresql/library/unde_sql_migrate.py")


def repo_root() -> Path:
    """The repository checkout (the directory holding files/sql and the migration runner): above
    this module in the uv workspace, else above the working directory."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / _RUNNER).is_file() and (candidate / "files/sql").is_dir():
                return candidate
    raise RuntimeError(f"no repository checkout with {_RUNNER} above {__file__} or {Path.cwd()}")


@cache
def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unde_sql_migrate", repo_root() / _RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("unde_sql_migrate", module)
    spec.loader.exec_module(module)
    return module


def migrate_database(pg: PostgresHandle, database: str, schema: str) -> str:
    """(Re)create ``database`` in ``pg`` and apply files/sql/``schema`` (``unde_main``,
    ``unde_shard``, ``unde_staging``); return its DSN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
        from pgserver._commands import POSTGRES_BIN_PATH
    directory = repo_root() / "files/sql" / schema
    if not directory.is_dir():
        raise ValueError(f"no migrations directory files/sql/{schema}")
    dsn = pg.create_database(database)
    match = re.search(r"host=([^&]+)", dsn)
    if match is None:
        raise ValueError(f"test DSN without a socket host: {dsn}")
    runner = _runner()
    run = runner.subprocess_runner(
        runner.Connection(database=database, host=match.group(1), user="postgres"),
        psql=str(POSTGRES_BIN_PATH / "psql"),
        timeout=120,
    )
    runner.migrate(run, directory)
    return dsn
