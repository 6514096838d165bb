"""verify_backups.yml's comparison: sql/row_counts.sql on a real PostgreSQL, and the filters of
playbooks/runbooks/filter_plugins/unde_backups.py."""

from __future__ import annotations

import subprocess
from types import ModuleType

import pytest
from sql.conftest import Postgres
from unde_testkit.loaders import load_module

from backups.conftest import REPO, RUNBOOK_SQL


def _filters() -> ModuleType:
    return load_module(
        "unde_backups_filters", REPO / "playbooks" / "runbooks" / "filter_plugins" / "unde_backups.py"
    )


F = _filters()


def row_counts(pg: Postgres, database: str) -> str:
    res = subprocess.run(
        [
            pg.psql,
            "-X",
            "-q",
            "-h",
            pg.socket_dir,
            "-U",
            "postgres",
            "-d",
            database,
            "-f",
            str(RUNBOOK_SQL / "row_counts.sql"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_row_counts_of_a_migrated_shard(pg: Postgres, shard_db: str) -> None:
    with pg.connect(shard_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO user_keys (user_id, encrypted_dek)"
            " SELECT gen_random_uuid(), 'k' FROM generate_series(1, 5)"
        )
        conn.execute("CREATE SCHEMA extra")
        conn.execute('CREATE TABLE extra."Odd name" (x int)')
        conn.execute('INSERT INTO extra."Odd name" VALUES (1), (2)')
    counts = F.unde_parse_row_counts(row_counts(pg, shard_db))
    assert counts["public.user_keys"] == 5
    assert counts["extra.Odd name"] == 2
    # 64 hash partitions of messages are counted one by one (ONLY: no double counting via the parent)
    assert len([r for r in counts if r.startswith("public.messages_p")]) == 64
    assert "public.messages" not in counts  # the partitioned parent has no rows of its own
    assert counts["public.schema_migrations"] == len(list((REPO / "files/sql/unde_shard").glob("[0-9]*.sql")))


def test_compare_and_table() -> None:
    rows = F.unde_compare_row_counts(
        {"a.t": 3, "a.u": 1, "a.gone": 2}, {"a.t": 3, "a.u": 4, "a.new": 1}, "db"
    )
    status = {r["relation"]: (r["status"], r["delta"]) for r in rows}
    assert status == {
        "a.gone": ("missing", -2),
        "a.new": ("extra", 1),
        "a.t": ("ok", 0),
        "a.u": ("differs", 3),
    }
    table = F.unde_row_count_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["database", "relation", "source", "restored", "delta", "status"]
    assert lines[-1] == "4 relation(s), 1 equal, 3 not equal"
    assert "db        a.gone    2       -         -2     missing" in table


def test_bad_counts_are_named() -> None:
    with pytest.raises(F.RunbookError, match="source unde_main: line 2"):
        F.unde_parse_row_counts("a.t,1\nnot a count\n", "source unde_main")


def test_apply_deletions_result() -> None:
    out = "noise\napply_deletions tombstones=4 on_shard=3 erased_now=2\n"
    assert F.unde_apply_deletions_result(out) == {"tombstones": 4, "on_shard": 3, "erased_now": 2}
    with pytest.raises(F.RunbookError, match="no result line"):
        F.unde_apply_deletions_result("ERROR: something\n")
