"""Master-key rotation: re-wrap every user's DEK under a new master key version.

Runbook (the llm_orchestrator role drives it through ``unde-llm-orchestrator-admin``):

1. deliver a ring holding the old and the new key, ``current`` = new (new DEKs are wrapped under
   it at once; workers pick the ring up without a restart, :class:`~llm_orchestrator.crypto.KeyRingSource`);
2. ``rotate-master-key --to-version N``: :func:`rewrap_batch` until nothing is left;
3. ``check-ring`` with the ring that lacks the old key: refuses while any DEK still uses it;
4. deliver the ring without the old key.

Only the DEKs (``user_keys``) change; the facts (``user_knowledge``) are encrypted with the DEKs and
are not touched, so a rotation costs one small UPDATE per user.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from llm_orchestrator.crypto import MasterKeyRing, UnknownKeyVersionError, unwrap_dek, wrap_dek

__all__ = ["key_status", "missing_versions", "rewrap_batch"]


async def key_status(conn: AsyncConnection[Any]) -> dict[int, int]:
    """DEK rows per ``master_key_version`` on one shard."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT master_key_version, count(*) FROM user_keys GROUP BY 1 ORDER BY 1")
        return {int(version): int(count) for version, count in await cur.fetchall()}


def missing_versions(status: dict[int, int], ring: MasterKeyRing) -> dict[int, int]:
    """The versions (→ DEK rows) of ``status`` that ``ring`` cannot unwrap."""
    return {version: count for version, count in status.items() if version not in ring.keys}


async def rewrap_batch(
    conn: AsyncConnection[Any], ring: MasterKeyRing, to_version: int, batch: int = 500
) -> int:
    """Re-wrap up to ``batch`` DEKs that are not under ``to_version``, in one transaction: each is
    unwrapped with its own version's key and wrapped with ``to_version``'s (``rotated_at = now()``).
    Returns how many rows it re-wrapped; 0 when none is left (or all left are locked by a writer:
    ``FOR NO KEY UPDATE SKIP LOCKED``, so a rotation never blocks the dialogue path). Interrupted
    anywhere: run it again, a committed batch stays done and an open one rolls back.

    Before anything changes: ``to_version`` and every version still in use must be in the ring,
    else :class:`~llm_orchestrator.crypto.UnknownKeyVersionError` naming the version and its rows."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    ring.key(to_version)
    pending = {v: n for v, n in (await key_status(conn)).items() if v != to_version}
    missing = missing_versions(pending, ring)
    if missing:
        version, count = min(missing.items())
        raise UnknownKeyVersionError(
            version, ring.versions, f": {count} DEK rows use it, nothing was re-wrapped"
        )
    async with conn.transaction():
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(
                "SELECT user_id, encrypted_dek, master_key_version FROM user_keys "
                "WHERE master_key_version <> %s ORDER BY user_id LIMIT %s FOR NO KEY UPDATE SKIP LOCKED",
                (to_version, batch),
            )
            rows = await cur.fetchall()
        updates = []
        for user_id, blob, version in rows:
            dek = unwrap_dek(ring, user_id, bytes(blob), int(version))
            new_blob, _ = wrap_dek(ring, user_id, dek, to_version)
            updates.append((new_blob, to_version, user_id, int(version)))
        if updates:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "UPDATE user_keys SET encrypted_dek = %s, master_key_version = %s, rotated_at = now() "
                    "WHERE user_id = %s AND master_key_version = %s",
                    updates,
                )
    return len(updates)
