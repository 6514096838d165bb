"""apply_deletions (playbooks/runbooks/sql) on a real PostgreSQL: the production registry exported
with export_tombstones.sql, re-applied to a "restored" shard with apply_deletions.sql, exactly as
the runbook runs them (psql, CSV through stdin)."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import uuid
from typing import Any

import psycopg
from sql.conftest import Postgres

from backups.conftest import RUNBOOK_SQL

UTC = dt.UTC
EXPORT = RUNBOOK_SQL / "export_tombstones.sql"
APPLY = RUNBOOK_SQL / "apply_deletions.sql"


def psql(pg: Postgres, database: str, script: Any, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pg.psql, "-X", "-q", "-h", pg.socket_dir, "-U", "postgres", "-d", database, "-f", str(script)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def counts(out: str) -> dict[str, int]:
    line = next(x for x in out.splitlines() if x.startswith("apply_deletions "))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


class Shard:
    """A conversation with messages and knowledge on the restored shard."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.user = uuid.uuid4()
        self.conv = uuid.uuid4()
        conn.execute("INSERT INTO user_keys (user_id, encrypted_dek) VALUES (%s, %s)", (self.user, b"k" * 60))
        conn.execute("INSERT INTO conversations (id, user_id) VALUES (%s, %s)", (self.conv, self.user))

    def message(self, content: str, **cols: Any) -> uuid.UUID:
        mid = uuid.uuid4()
        cols = {"role": "user", "embedding": "[" + ",".join(["0.1"] * 1024) + "]", **cols}
        names = ", ".join(["id", "conversation_id", "content", *cols])
        marks = ", ".join(["%s"] * (3 + len(cols)))
        self.conn.execute(
            f"INSERT INTO messages ({names}) VALUES ({marks})",  # noqa: S608  (column names of this test)
            (mid, self.conv, content, *cols.values()),
        )
        return mid

    def knowledge(self, source: uuid.UUID | None) -> uuid.UUID:
        kid = uuid.uuid4()
        self.conn.execute(
            "INSERT INTO user_knowledge (id, user_id, encrypted_data, iv, auth_tag, knowledge_type,"
            " source_conversation_id, source_message_id) VALUES (%s, %s, 'x', %s, %s, 'budget', %s, %s)",
            (kid, self.user, b"i" * 12, b"t" * 16, self.conv if source else None, source),
        )
        return kid


def test_restore_then_apply_deletions_leaves_no_deleted_message_readable(
    pg: Postgres, main_db: str, shard_db: str
) -> None:
    with pg.connect(shard_db, autocommit=True) as shard_conn:
        shard = Shard(shard_conn)
        secret = shard.message(
            "my secret size is 38 and I love prada",
            memory_snippet="size 38, prada",
            memory_confidence=0.9,
            response_description="red prada coat",
        )
        reply = shard.message("nice coat", role="assistant", reply_to_id=secret)
        keep = shard.message("keep this one: gucci loafers")
        already = shard.message(
            "[deleted]",
            embedding=None,
            memory_confidence=None,
            is_forgotten=True,
            deleted_at=dt.datetime(2026, 1, 2, tzinfo=UTC),
        )
        k_secret = shard.knowledge(secret)
        k_keep = shard.knowledge(keep)
        k_none = shard.knowledge(None)

    # the production registry: three tombstones, one for a message this shard never had
    deleted_at = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    missing = uuid.uuid4()
    with pg.connect(main_db, autocommit=True) as main:
        main.execute("DELETE FROM deleted_messages_registry")
        for mid in (secret, reply, missing):
            main.execute(
                "INSERT INTO deleted_messages_registry (conversation_id, message_id, user_id, deleted_at)"
                " VALUES (%s, %s, %s, %s)",
                (shard.conv, mid, shard.user, deleted_at),
            )
        main.execute(
            "INSERT INTO deleted_messages_registry (conversation_id, message_id, deleted_at)"
            " VALUES (%s, %s, %s)",
            (shard.conv, already, dt.datetime(2026, 1, 2, tzinfo=UTC)),
        )

    exported = psql(pg, main_db, EXPORT)
    assert exported.returncode == 0, exported.stderr
    assert len(exported.stdout.splitlines()) == 4

    first = psql(pg, shard_db, APPLY, exported.stdout)
    assert first.returncode == 0, first.stderr
    assert counts(first.stdout) == {
        "tombstones": 4,
        "on_shard": 3,
        "not_on_shard": 1,
        "erased_now": 2,
        "already_erased": 1,
        "knowledge_deleted": 1,
        "still_readable": 0,
        "knowledge_left": 0,
    }

    with pg.connect(shard_db) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, content, embedding IS NULL, memory_snippet, memory_confidence,"
                " response_description, reply_to_id, is_forgotten, deleted_at"
                " FROM messages WHERE conversation_id = %s",
                (shard.conv,),
            )
        }
        for mid in (secret, reply):
            assert rows[mid] == ("[deleted]", True, None, None, None, None, True, deleted_at)
        assert rows[already][-1] == dt.datetime(2026, 1, 2, tzinfo=UTC)  # its own deleted_at is kept
        assert rows[keep][:3] == ("keep this one: gucci loafers", False, None)
        assert rows[keep][-2:] == (False, None)
        # full text no longer finds the erased words (tsv follows content)
        hits = conn.execute(
            "SELECT count(*) FROM messages"
            " WHERE conversation_id = %s AND tsv @@ to_tsquery('simple', 'prada')",
            (shard.conv,),
        ).fetchone()
        assert hits == (0,)
        left = {r[0] for r in conn.execute("SELECT id FROM user_knowledge WHERE user_id = %s", (shard.user,))}
        assert left == {k_keep, k_none}
        assert k_secret not in left

    # idempotent: a second run changes nothing and says so
    second = psql(pg, shard_db, APPLY, exported.stdout)
    assert second.returncode == 0, second.stderr
    assert counts(second.stdout)["erased_now"] == 0
    assert counts(second.stdout)["knowledge_deleted"] == 0
    assert counts(second.stdout)["already_erased"] == 3


def test_bad_registry_input_fails_and_changes_nothing(pg: Postgres, shard_db: str) -> None:
    with pg.connect(shard_db, autocommit=True) as conn:
        shard = Shard(conn)
        mid = shard.message("still here")
    good = f"{shard.conv},{mid},2026-03-01T00:00:00Z\n"
    res = psql(pg, shard_db, APPLY, good + "not-a-uuid,also-not,yesterday\n")
    assert res.returncode != 0
    assert "invalid input syntax for type uuid" in res.stderr
    with pg.connect(shard_db) as conn:
        row = conn.execute("SELECT content FROM messages WHERE id = %s", (mid,)).fetchone()
        assert row == ("still here",)


def test_empty_registry_is_a_no_op(pg: Postgres, shard_db: str) -> None:
    res = psql(pg, shard_db, APPLY, "")
    assert res.returncode == 0, res.stderr
    assert counts(res.stdout)["tombstones"] == 0
