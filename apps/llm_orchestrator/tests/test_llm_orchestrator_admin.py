"""``unde-llm-orchestrator-admin`` against a migrated shard and production database (as the app_rw and
orchestrator logins the settings name), a real Redis and an S3-compatible server: JSON on stdout with
``changed``, exit 1 with the reason on stderr."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import redis

from llm_orchestrator.admin import main, shard_dsns
from llm_orchestrator.crypto import MasterKeyRing
from llm_orchestrator.knowledge import store_fact
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_common.s3 import ObjectStore
from unde_testkit.catalog_testing import login_dsn
from unde_testkit.testing import EnvWriter, EnvWriterFactory, PostgresHandle, S3Handle
from unde_testkit.testing_sql import migrate_database

T = TypeVar("T")
K1, K2 = bytes(range(32)), bytes(range(60, 92))
MEDIA_BUCKET = "orch-admin-user-media"
BACKUP_BUCKET = "orch-admin-backups"


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


@pytest.fixture(scope="module")
def shard_admin(pg: PostgresHandle) -> str:
    return migrate_database(pg, "orch_admin_shard", "unde_shard")


@pytest.fixture(scope="module")
def main_admin(pg: PostgresHandle) -> str:
    return migrate_database(pg, "orch_admin_main", "unde_main")


def write_ring(path: Path, current: int, keys: dict[int, bytes]) -> MasterKeyRing:
    tmp = path.with_suffix(".tmp")
    doc = {"current": current, "keys": {str(v): base64.b64encode(k).decode() for v, k in keys.items()}}
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    return MasterKeyRing.load(path)


class Admin:
    """The CLI with a .env naming the test databases and the ring file."""

    def __init__(
        self, write_env: EnvWriter, pg: PostgresHandle, shard_admin: str, main_admin: str, ring_file: Path
    ) -> None:
        self.shard_admin, self.main_admin, self.ring_file = shard_admin, main_admin, ring_file
        self.shard_dsn = login_dsn(pg, "orch_admin_shard", "orch_app_rw", ["unde_shard_app_rw"])
        self.main_dsn = login_dsn(pg, "orch_admin_main", "orch_orchestrator", ["unde_main_orchestrator"])
        self.write_env = write_env
        self.env_file = self.env()

    def env(self, extra: dict[str, str] | None = None) -> Path:
        """(Re)write the .env: the databases, the ring file and ``extra``."""
        return self.write_env(
            {
                "SHARD_0_DB_URL": self.shard_dsn,
                "PRODUCTION_DB_URL": self.main_dsn,
                "MASTER_KEY_FILE": str(self.ring_file),
                **(extra or {}),
            }
        )

    def __call__(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        lines = out.strip().splitlines()
        assert len(lines) == 1, out
        return status, json.loads(lines[0]), err

    def store(self, ring: MasterKeyRing, users: list[uuid.UUID]) -> None:
        async def body() -> None:
            conn = await psycopg.AsyncConnection.connect(self.shard_dsn, autocommit=True)
            try:
                for user in users:
                    await store_fact(
                        conn,
                        user,
                        ring,
                        "budget",
                        {"max": 1000},
                        confidence=0.5,
                        source_message_id=uuid.uuid4(),
                        source_conversation_id=uuid.uuid4(),
                    )
            finally:
                await conn.close()

        run(body())


@pytest.fixture
def admin(
    env_writer: EnvWriterFactory, pg: PostgresHandle, shard_admin: str, main_admin: str, tmp_path: Path
) -> Admin:
    with psycopg.connect(shard_admin, autocommit=True) as conn:
        conn.execute("TRUNCATE user_keys CASCADE")
    return Admin(env_writer(LlmOrchestratorSettings), pg, shard_admin, main_admin, tmp_path / "master_keys")


def test_key_status_check_ring_and_rotation(admin: Admin, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = write_ring(admin.ring_file, 1, {1: K1})
    admin.store(v1, [uuid.uuid4() for _ in range(3)])
    assert admin(capsys, "key-status")[:2] == (0, {"changed": False, "shards": {"0": {"1": 3}}})
    assert admin(capsys, "check-ring")[0] == 0

    write_ring(admin.ring_file, 2, {2: K2})  # the old key retired too early
    status, out, err = admin(capsys, "check-ring")
    assert (
        status == 1 and out["ok"] is False and out["missing"] == {"0": {"1": 3}} and out["changed"] is False
    )
    assert "version 1 (3 DEKs)" in err and "rotate-master-key" in err

    write_ring(admin.ring_file, 1, {1: K1, 2: K2})
    status, out, err = admin(capsys, "rotate-master-key", "--to-version", "2")
    assert status == 1 and "current version is 1, not 2" in err and out["changed"] is False

    write_ring(admin.ring_file, 2, {1: K1, 2: K2})
    status, out, _ = admin(
        capsys, "rotate-master-key", "--to-version", "2", "--batch", "2", "--max-batches", "1"
    )
    assert status == 0 and out["changed"] is True and out["rewrapped"] == {"0": 2} and out["batches"] == 1
    assert out["remaining"] == {"0": {"1": 1}} and out["complete"] is False
    status, out, _ = admin(capsys, "rotate-master-key", "--to-version", "2", "--batch", "2")
    assert status == 0 and out["changed"] is True and out["rewrapped"] == {"0": 1} and out["complete"] is True
    assert out["shards"] == {"0": {"2": 3}} and out["remaining"] == {"0": {}} and out["rewrapped_total"] == 1
    status, out, _ = admin(capsys, "rotate-master-key", "--to-version", "2")
    assert status == 0 and out["changed"] is False and out["rewrapped"] == {"0": 0}

    write_ring(admin.ring_file, 2, {2: K2})
    status, out, _ = admin(capsys, "check-ring")
    assert status == 0 and out["ok"] is True and out["ring"] == {"current": 2, "versions": [2]}
    status, out, err = admin(capsys, "rotate-master-key", "--to-version", "3")
    assert status == 1 and "version 3 is not in the key ring" in err


def test_missing_ring_names_the_playbook(admin: Admin, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = admin(capsys, "check-ring")
    assert status == 1 and out["changed"] is False
    assert "llm_orchestrator_configure" in err and "only in RAM" in err and str(admin.ring_file) in err


def seed(admin: Admin, s3: Any, redis_url: str, user: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    conv, mid = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(admin.shard_admin, autocommit=True) as conn:
        conn.execute("INSERT INTO conversations (id, user_id) VALUES (%s, %s)", (conv, user))
        conn.execute(
            "INSERT INTO messages (id, conversation_id, role, content, memory_snippet) "
            "VALUES (%s, %s, 'user', 'hello', 'snip')",
            (mid, conv),
        )
        conn.execute("INSERT INTO relationship_stage (user_id) VALUES (%s)", (user,))
    with psycopg.connect(admin.main_admin, autocommit=True) as conn:
        conn.execute("INSERT INTO routing_table (user_id, shard_index) VALUES (%s, 0)", (user,))
    ObjectStore(s3, MEDIA_BUCKET).put_bytes(f"{user}/photos/p/original.jpg", b"jpeg")
    with redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/13") as client:
        client.set(f"persona:ver:{user}", 1)
    return conv, mid


def test_erase_user(
    admin: Admin,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    s3: S3Handle,
    redis_url: str,
) -> None:
    client = s3.client()
    for bucket in (MEDIA_BUCKET, BACKUP_BUCKET):
        ObjectStore(client, bucket).ensure_bucket()
    write_ring(admin.ring_file, 1, {1: K1})
    user = uuid.uuid4()
    seed(admin, client, redis_url, user)
    admin.store(MasterKeyRing.load(admin.ring_file), [user])

    status, out, err = admin(capsys, "erase-user", "--user-id", str(user))
    assert status == 1 and "ERASE_S3_ENDPOINT is not set" in err

    base = redis_url.rsplit("/", 1)[0]
    monkeypatch.setenv("ERASE_REDIS_URLS", f"{base}/9, {base}/13")
    monkeypatch.setenv("ERASE_S3_ENDPOINT", s3.endpoint_url)
    monkeypatch.setenv("ERASE_S3_REGION", s3.region)
    monkeypatch.setenv("ERASE_S3_ACCESS_KEY", s3.access_key)
    monkeypatch.setenv("ERASE_S3_SECRET_KEY", s3.secret_key)
    monkeypatch.setenv("ERASE_S3_BUCKET", MEDIA_BUCKET)
    status, out, _ = admin(capsys, "erase-user", "--user-id", str(user))
    assert status == 0 and out["changed"] is True and out["user_id"] == str(user)
    assert out["messages_deleted"] == 1 and out["tombstones_written"] == 1 and out["user_keys_deleted"] == 1
    assert out["user_knowledge_deleted"] == 1 and out["routing_table_deleted"] == 1
    assert out["media_objects_deleted"] == 1 and sum(out["redis_keys_deleted"].values()) == 1
    assert out["persona_rows_deleted"]["relationship_stage"] == 1
    status, out, _ = admin(capsys, "erase-user", "--user-id", str(user))
    assert status == 0 and out["changed"] is False and out["messages_deleted"] == 0

    other = uuid.uuid4()
    seed(admin, client, redis_url, other)
    status, out, _ = admin(capsys, "erase-user", "--user-id", str(other), "--no-media", "--no-redis")
    assert status == 0 and out["changed"] is True and out["media_objects_deleted"] == 0
    assert out["redis_keys_deleted"] == {}
    assert list(ObjectStore(client, MEDIA_BUCKET).list_keys(f"{other}/")) != []

    # the daily timer reads the backups bucket from the app's .env, as the role renders it
    status, out, err = admin(capsys, "copy-tombstones")
    assert status == 1 and "TOMBSTONE_S3_ACCESS_KEY" in err and "TOMBSTONE_S3_SECRET_KEY" in err
    admin.env(
        {
            "TOMBSTONE_S3_ENDPOINT": s3.endpoint_url,
            "TOMBSTONE_S3_REGION": s3.region,
            "TOMBSTONE_S3_ACCESS_KEY": s3.access_key,
            "TOMBSTONE_S3_SECRET_KEY": s3.secret_key,
            "TOMBSTONE_S3_BUCKET": BACKUP_BUCKET,
        }
    )
    with psycopg.connect(admin.main_admin) as conn:
        row = conn.execute(
            "SELECT (deleted_at AT TIME ZONE 'UTC')::date::text FROM deleted_messages_registry "
            "WHERE user_id = %s",
            (user,),
        ).fetchone()
    assert row is not None
    status, out, _ = admin(capsys, "copy-tombstones", "--day", row[0])
    assert status == 0 and out["changed"] is True and out["rows"] >= 2 and out["bucket"] == BACKUP_BUCKET
    assert out["key"] == f"tombstones/deleted_messages_registry/{row[0]}.jsonl"
    assert admin(capsys, "copy-tombstones", "--day", row[0])[1]["changed"] is False


def test_soft_forget_and_hard_delete(
    admin: Admin, capsys: pytest.CaptureFixture[str], s3: S3Handle, redis_url: str
) -> None:
    client = s3.client()
    ObjectStore(client, MEDIA_BUCKET).ensure_bucket()
    user = uuid.uuid4()
    conv, mid = seed(admin, client, redis_url, user)
    args = ("--conversation-id", str(conv), "--message-id", str(mid))
    status, out, _ = admin(capsys, "soft-forget", *args)
    assert status == 0 and out == {
        "changed": True,
        "found": True,
        "knowledge_deactivated": 0,
        "shard": 0,
        "snippets_nullified": 1,
    }
    assert admin(capsys, "soft-forget", *args)[1]["changed"] is False
    status, out, _ = admin(capsys, "hard-delete", *args)
    assert status == 0 and out["changed"] is True and out["tombstone_written"] is True
    assert admin(capsys, "hard-delete", *args)[1]["changed"] is False
    with psycopg.connect(admin.main_admin) as conn:
        assert conn.execute(
            "SELECT user_id, reason FROM deleted_messages_registry WHERE conversation_id = %s", (conv,)
        ).fetchall() == [(user, "user_request")]
    status, out, err = admin(
        capsys, "hard-delete", "--conversation-id", str(uuid.uuid4()), "--message-id", str(mid)
    )
    assert status == 1 and "is on no shard" in err
    status, out, err = admin(
        capsys, "soft-forget", "--conversation-id", str(conv), "--message-id", str(uuid.uuid4())
    )
    assert status == 1 and "does not exist" in err


def test_shards_come_from_the_settings(admin: Admin) -> None:
    settings = LlmOrchestratorSettings.load()
    assert list(shard_dsns(settings)) == [0]
    assert shard_dsns(settings)[0].get_secret_value() == admin.shard_dsn


def test_module_entry_point(admin: Admin) -> None:
    write_ring(admin.ring_file, 1, {1: K1})
    env = {**os.environ, "UNDE_ENV_FILE": str(admin.env_file)}
    done = subprocess.run(
        [sys.executable, "-m", "llm_orchestrator.admin", "key-status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"changed": False, "shards": {"0": {}}}
    bad = subprocess.run(
        [sys.executable, "-m", "llm_orchestrator.admin", "rotate-master-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "--to-version" in bad.stderr
