"""Master-key rotation on a migrated shard (as app_rw): DEKs re-wrapped batch by batch, resumable,
facts untouched and readable with only the new key; a version the ring lacks changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import psycopg
import pytest

from llm_orchestrator.crypto import MasterKeyRing, UnknownKeyVersionError
from llm_orchestrator.keyrotation import key_status, missing_versions, rewrap_batch
from llm_orchestrator.knowledge import load_knowledge, store_fact
from unde_testkit.catalog_testing import login_dsn
from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database

T = TypeVar("T")
K1, K2, K3 = bytes(range(32)), bytes(range(50, 82)), bytes(range(150, 182))
V1 = MasterKeyRing(current=1, keys={1: K1})
V1_V2 = MasterKeyRing(current=2, keys={1: K1, 2: K2})
ONLY_V2 = MasterKeyRing(current=2, keys={2: K2})


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


@pytest.fixture(scope="module")
def admin_dsn(pg: PostgresHandle) -> str:
    return migrate_database(pg, "orch_rotation_shard", "unde_shard")


@pytest.fixture
def shard_dsn(pg: PostgresHandle, admin_dsn: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE user_keys CASCADE")
    return login_dsn(pg, "orch_rotation_shard", "orch_app_rw", ["unde_shard_app_rw"])


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def users_with_facts(
    conn: psycopg.AsyncConnection[Any], ring: MasterKeyRing, n: int
) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in range(n)]
    for i, user in enumerate(users):
        for ktype in ("budget", "style_profile"):
            await store_fact(
                conn,
                user,
                ring,
                ktype,
                {"user": i, "type": ktype},
                confidence=0.9,
                source_message_id=uuid.uuid4(),
                source_conversation_id=uuid.uuid4(),
            )
    return users


def snapshot(admin_dsn: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(admin_dsn) as conn:
        keys = conn.execute(
            "SELECT user_id, encrypted_dek, master_key_version, rotated_at FROM user_keys ORDER BY user_id"
        ).fetchall()
        facts = conn.execute(
            "SELECT id, encrypted_data, iv, auth_tag, updated_at FROM user_knowledge ORDER BY id"
        ).fetchall()
    return keys, facts


def test_rotation_in_batches_resumes_and_leaves_facts_untouched(shard_dsn: str, admin_dsn: str) -> None:
    async def setup() -> list[uuid.UUID]:
        conn = await connect(shard_dsn)
        try:
            return await users_with_facts(conn, V1, 5)
        finally:
            await conn.close()

    users = run(setup())
    _, facts_before = snapshot(admin_dsn)

    async def one_batch() -> tuple[int, dict[int, int]]:
        conn = await connect(shard_dsn)
        try:
            # a DEK created while the rotation runs is wrapped under the new current version at once
            await users_with_facts(conn, V1_V2, 1)
            done = await rewrap_batch(conn, V1_V2, 2, batch=2)
            return done, await key_status(conn)
        finally:
            await conn.close()

    done, status = run(one_batch())  # the "interrupted" rotation: one batch, then the process is gone
    assert done == 2 and status == {1: 3, 2: 3}

    async def resume() -> tuple[list[int], dict[int, int]]:
        conn = await connect(shard_dsn)
        try:
            counts = []
            while n := await rewrap_batch(conn, V1_V2, 2, batch=2):
                counts.append(n)
            return counts, await key_status(conn)
        finally:
            await conn.close()

    counts, status = run(resume())
    assert counts == [2, 1] and status == {2: 6}
    keys_after, facts_after = snapshot(admin_dsn)
    rotated = {user: (version, rotated_at) for user, _blob, version, rotated_at in keys_after}
    assert all(rotated[user][0] == 2 and rotated[user][1] is not None for user in users)
    after = {f[0]: f for f in facts_after}
    assert all(after[f[0]] == f for f in facts_before)  # not one byte (nor updated_at) of a fact changed

    async def read_with_only_v2() -> list[Any]:
        conn = await connect(shard_dsn)
        try:
            return [await load_knowledge(conn, user, ONLY_V2) for user in users]
        finally:
            await conn.close()

    for i, loaded in enumerate(run(read_with_only_v2())):
        assert loaded.decrypt_errors == 0 and loaded.dek_error is None
        assert sorted((f.data["user"], f.data["type"]) for f in loaded.facts) == [
            (i, "budget"),
            (i, "style_profile"),
        ]
    assert run(_rewrap(shard_dsn, ONLY_V2, 2)) == 0  # nothing left: a repeat is a no-op


async def _rewrap(dsn: str, ring: MasterKeyRing, to: int, batch: int = 500) -> int:
    conn = await connect(dsn)
    try:
        return await rewrap_batch(conn, ring, to, batch)
    finally:
        await conn.close()


def test_version_missing_from_the_ring_changes_nothing(shard_dsn: str, admin_dsn: str) -> None:
    async def setup() -> None:
        conn = await connect(shard_dsn)
        try:
            await users_with_facts(conn, V1, 2)
            await users_with_facts(conn, V1_V2, 1)
        finally:
            await conn.close()

    run(setup())
    before = snapshot(admin_dsn)
    ring_v2_v3 = MasterKeyRing(current=3, keys={2: K2, 3: K3})
    with pytest.raises(UnknownKeyVersionError) as info:
        run(_rewrap(shard_dsn, ring_v2_v3, 3))
    message = str(info.value)
    assert "version 1 is not in the key ring" in message and "2 DEK rows use it" in message
    assert "nothing was re-wrapped" in message
    assert snapshot(admin_dsn) == before
    with pytest.raises(UnknownKeyVersionError, match="version 4"):
        run(_rewrap(shard_dsn, V1_V2, 4))  # the target itself is not in the ring
    assert snapshot(admin_dsn) == before
    assert missing_versions({1: 2, 2: 1}, ring_v2_v3) == {1: 2}
    with pytest.raises(ValueError, match="batch"):
        run(_rewrap(shard_dsn, V1_V2, 2, batch=0))


def test_rows_locked_by_a_writer_are_skipped_not_waited_for(shard_dsn: str, admin_dsn: str) -> None:
    async def setup() -> list[uuid.UUID]:
        conn = await connect(shard_dsn)
        try:
            return await users_with_facts(conn, V1, 3)
        finally:
            await conn.close()

    users = run(setup())
    with psycopg.connect(admin_dsn) as holder:
        holder.execute("SELECT 1 FROM user_keys WHERE user_id = %s FOR NO KEY UPDATE", (users[0],))
        assert run(_rewrap(shard_dsn, V1_V2, 2)) == 2
        holder.rollback()
    assert run(_rewrap(shard_dsn, V1_V2, 2)) == 1

    async def status() -> dict[int, int]:
        conn = await connect(shard_dsn)
        try:
            return await key_status(conn)
        finally:
            await conn.close()

    assert run(status()) == {2: 3}
