"""The migration runner (roles/postgresql/library/unde_sql_migrate.py) against a real PostgreSQL:
fresh apply, re-run no-op, edited file refused, failing file rolled back, check mode, naming
rules, the Ansible module itself, and the repository's three databases from empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from sql.conftest import DATABASES, REPO, SQL_DIR, Postgres


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def recorded(pg: Postgres, database: str) -> dict[str, str]:
    with pg.connect(database) as conn:
        rows = conn.execute("SELECT filename, checksum FROM public.schema_migrations").fetchall()
    return dict(rows)


def table_exists(pg: Postgres, database: str, table: str) -> bool:
    with pg.connect(database) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "sql"
    write(directory, "0001_create_things.sql", "CREATE TABLE things (id int PRIMARY KEY, name text);\n")
    write(
        directory,
        "0002_seed_things.sql",
        "INSERT INTO things VALUES (1, 'one');\n"
        "DO $$\nBEGIN\n    INSERT INTO things VALUES (2, 'two');\nEND;\n$$;\n",
    )
    return directory


def test_fresh_apply_then_rerun_is_a_noop(pg: Postgres, scratch_db: str, migrations: Path) -> None:
    first = pg.migrate(scratch_db, migrations)
    assert first.applied == ["0001_create_things.sql", "0002_seed_things.sql"]
    assert first.changed
    runner = pg.runner
    assert recorded(pg, scratch_db) == {
        "0001_create_things.sql": runner.checksum_of((migrations / "0001_create_things.sql").read_bytes()),
        "0002_seed_things.sql": runner.checksum_of((migrations / "0002_seed_things.sql").read_bytes()),
    }
    with pg.connect(scratch_db) as conn:
        assert conn.execute("SELECT count(*) FROM things").fetchone() == (2,)

    again = pg.migrate(scratch_db, migrations)
    assert again.applied == []
    assert not again.changed
    assert again.already_applied == ["0001_create_things.sql", "0002_seed_things.sql"]

    write(migrations, "0003_more.sql", "ALTER TABLE things ADD COLUMN colour text;\n")
    third = pg.migrate(scratch_db, migrations)
    assert third.applied == ["0003_more.sql"]


def test_check_mode_reports_without_touching_the_database(
    pg: Postgres, scratch_db: str, migrations: Path
) -> None:
    result = pg.migrate(scratch_db, migrations, check_mode=True)
    assert result.applied == ["0001_create_things.sql", "0002_seed_things.sql"]
    assert not table_exists(pg, scratch_db, "public.schema_migrations")
    assert not table_exists(pg, scratch_db, "things")

    pg.migrate(scratch_db, migrations)
    assert pg.migrate(scratch_db, migrations, check_mode=True).applied == []


def test_edited_applied_file_is_refused_with_both_checksums(
    pg: Postgres, scratch_db: str, migrations: Path
) -> None:
    pg.migrate(scratch_db, migrations)
    path = migrations / "0001_create_things.sql"
    old = pg.runner.checksum_of(path.read_bytes())
    path.write_text("CREATE TABLE things (id bigint PRIMARY KEY);\n")
    new = pg.runner.checksum_of(path.read_bytes())
    with pytest.raises(pg.runner.MigrationError) as caught:
        pg.migrate(scratch_db, migrations)
    message = str(caught.value)
    assert "0001_create_things.sql" in message
    assert old in message
    assert new in message
    # check mode refuses it too
    with pytest.raises(pg.runner.MigrationError):
        pg.migrate(scratch_db, migrations, check_mode=True)


def test_failing_migration_is_rolled_back_and_named(pg: Postgres, scratch_db: str, migrations: Path) -> None:
    pg.migrate(scratch_db, migrations)
    write(
        migrations,
        "0003_half_done.sql",
        "CREATE TABLE half_done (id int);\n"
        "INSERT INTO things VALUES (3, 'three');\n"
        "ALTER TABLE things ADD COLUMN name text;  -- fails: the column exists\n"
        "CREATE TABLE never_reached (id int);\n",
    )
    write(migrations, "0004_after.sql", "CREATE TABLE after_failure (id int);\n")
    with pytest.raises(pg.runner.MigrationError) as caught:
        pg.migrate(scratch_db, migrations)
    message = str(caught.value)
    assert "0003_half_done.sql" in message
    assert 'column "name" of relation "things" already exists' in message
    assert "psql:0003_half_done.sql:3:" in message  # psql's location, with the file name
    assert caught.value.applied == []
    # nothing of the file stayed, nothing after it ran
    assert not table_exists(pg, scratch_db, "half_done")
    assert not table_exists(pg, scratch_db, "after_failure")
    with pg.connect(scratch_db) as conn:
        assert conn.execute("SELECT count(*) FROM things").fetchone() == (2,)
    assert set(recorded(pg, scratch_db)) == {"0001_create_things.sql", "0002_seed_things.sql"}

    # fixed, it applies (with the one after it)
    write(migrations, "0003_half_done.sql", "CREATE TABLE half_done (id int);\n")
    assert pg.migrate(scratch_db, migrations).applied == ["0003_half_done.sql", "0004_after.sql"]


def test_failure_after_applied_files_reports_what_was_applied(
    pg: Postgres, scratch_db: str, tmp_path: Path
) -> None:
    directory = tmp_path / "sql"
    write(directory, "0001_ok.sql", "CREATE TABLE ok (id int);\n")
    write(directory, "0002_bad.sql", "SELECT 1 / 0;\n")
    with pytest.raises(pg.runner.MigrationError) as caught:
        pg.migrate(scratch_db, directory)
    assert caught.value.applied == ["0001_ok.sql"]
    assert "division by zero" in str(caught.value)
    assert set(recorded(pg, scratch_db)) == {"0001_ok.sql"}


def test_out_of_order_file_is_refused_unless_allowed(pg: Postgres, scratch_db: str, tmp_path: Path) -> None:
    directory = tmp_path / "sql"
    write(directory, "0001_a.sql", "CREATE TABLE a (id int);\n")
    write(directory, "0003_c.sql", "CREATE TABLE c (id int);\n")
    pg.migrate(scratch_db, directory)
    write(directory, "0002_b.sql", "CREATE TABLE b (id int);\n")
    with pytest.raises(pg.runner.MigrationError, match=r"0002_b\.sql.*0003_c\.sql"):
        pg.migrate(scratch_db, directory)
    assert pg.migrate(scratch_db, directory, allow_out_of_order=True).applied == ["0002_b.sql"]


def test_unknown_applied_file_is_reported(pg: Postgres, scratch_db: str, migrations: Path) -> None:
    pg.migrate(scratch_db, migrations)
    (migrations / "0002_seed_things.sql").unlink()
    result = pg.migrate(scratch_db, migrations)
    assert result.applied == []
    assert result.unknown_applied == ["0002_seed_things.sql"]


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("1_short.sql", "SELECT 1;", "must be named NNNN_description.sql"),
        ("0001_Upper.sql", "SELECT 1;", "must be named NNNN_description.sql"),
        ("0001_tx.sql", "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n", "BEGIN;"),
        ("0001_commit.sql", "CREATE TABLE t (id int);\ncommit;\n", "commit;"),
        ("0001_connect.sql", "\\connect other\nCREATE TABLE t (id int);\n", "\\connect"),
    ],
)
def test_unsafe_or_badly_named_files_are_refused(
    tmp_path: Path, pg: Postgres, name: str, text: str, error: str
) -> None:
    write(tmp_path, name, text)
    with pytest.raises(pg.runner.MigrationError) as caught:
        pg.runner.discover(tmp_path)
    assert error in str(caught.value)
    assert name in str(caught.value)


def test_duplicate_version_is_refused(tmp_path: Path, pg: Postgres) -> None:
    write(tmp_path, "0001_a.sql", "SELECT 1;")
    write(tmp_path, "0001_b.sql", "SELECT 1;")
    with pytest.raises(pg.runner.MigrationError, match="version 0001"):
        pg.runner.discover(tmp_path)


def test_plpgsql_blocks_and_subdirectories_are_fine(tmp_path: Path, pg: Postgres) -> None:
    write(tmp_path, "0001_do.sql", "DO $$\nBEGIN\n  PERFORM 1;\nEND;\n$$;\n-- COMMIT; in a comment\n")
    write(tmp_path / "queries", "anything.sql", "SELECT 1;")
    assert [m.filename for m in pg.runner.discover(tmp_path)] == ["0001_do.sql"]


@pytest.mark.parametrize("database", DATABASES)
def test_repository_migrations_apply_cleanly_to_an_empty_database(
    pg: Postgres, scratch_db: str, database: str
) -> None:
    """Each database's files apply in order to an empty database (pgvector included), re-run no-op."""
    result = pg.migrate(scratch_db, SQL_DIR / database)
    expected = sorted(p.name for p in (SQL_DIR / database).glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert result.applied == expected
    assert pg.migrate(scratch_db, SQL_DIR / database).applied == []


def ansible_module(
    pg: Postgres, database: str, directory: Path, tmp_path: Path, *extra: str
) -> dict[str, object]:
    """Run the module through ``ansible localhost -m unde_sql_migrate`` (the real AnsibleModule path)."""
    args = (
        f"database={database} migrations_dir={directory} psql={pg.psql} "
        f"login_host={pg.socket_dir} login_user=postgres"
    )
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {
        **os.environ,
        "ANSIBLE_LIBRARY": str(REPO / "roles" / "postgresql" / "library"),
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible")),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-m",
            "unde_sql_migrate",
            "-a",
            args,
            *extra,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    head, sep, body = proc.stdout.partition(" => ")
    assert sep, proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(body)
    result["_status"] = head.split("|")[-1].strip()
    return result


def test_ansible_module_end_to_end(pg: Postgres, scratch_db: str, migrations: Path, tmp_path: Path) -> None:
    checked = ansible_module(pg, scratch_db, migrations, tmp_path, "--check")
    assert checked["_status"] == "CHANGED"
    assert checked["applied"] == ["0001_create_things.sql", "0002_seed_things.sql"]
    assert not table_exists(pg, scratch_db, "things")

    applied = ansible_module(pg, scratch_db, migrations, tmp_path)
    assert applied["_status"] == "CHANGED", applied
    assert applied["applied"] == ["0001_create_things.sql", "0002_seed_things.sql"]

    again = ansible_module(pg, scratch_db, migrations, tmp_path)
    assert again["_status"] == "SUCCESS"
    assert again["changed"] is False
    assert again["applied"] == []

    write(migrations, "0003_bad.sql", "SELECT * FROM no_such_table;\n")
    failed = ansible_module(pg, scratch_db, migrations, tmp_path)
    assert failed["_status"] == "FAILED!"
    assert "0003_bad.sql" in str(failed["msg"])
    assert 'relation "no_such_table" does not exist' in str(failed["msg"])


def test_schema_migrations_is_not_readable_by_application_roles(migrated: Postgres) -> None:
    with migrated.connect("unde_main", autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS probe_user")
        conn.execute("CREATE ROLE probe_user LOGIN IN ROLE unde_main_readonly")
    try:
        with (
            migrated.connect("unde_main", user="probe_user") as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("SELECT * FROM public.schema_migrations")
    finally:
        with migrated.connect("unde_main", autocommit=True) as conn:
            conn.execute("DROP ROLE probe_user")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching OS user needs root")
def test_os_user_runs_psql_through_runuser(pg: Postgres, scratch_db: str, migrations: Path) -> None:
    """os_user (the role passes 'postgres') runs psql as that OS user; the files are read by the
    module and fed on stdin, so that user needs no access to them. pgserver's own service user
    stands in for 'postgres' here."""
    migrations.chmod(0o700)
    run = pg.runner.subprocess_runner(
        pg.runner.Connection(database=scratch_db, host=pg.socket_dir, user="postgres"),
        psql=pg.psql,
        os_user="pgserver",
    )
    assert pg.runner.command_prefix(pg.psql, "pgserver")[:3] == ["runuser", "-u", "pgserver"]
    result = pg.runner.migrate(run, migrations)
    assert result.applied == ["0001_create_things.sql", "0002_seed_things.sql"]
    assert run(["-X", "-c", "\\! id -un"], None).stdout.strip() == "pgserver"
