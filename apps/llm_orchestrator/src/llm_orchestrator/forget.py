"""Soft forget, hard delete and the GDPR erase of a user (spec 02 §14 "Soft / Hard Forget",
files/sql/README.md "Forget semantics"), and the daily copy of the tombstone registry to Object Storage.

A message is always the pair (conversation_id, message_id). The functions take the connections
they need (psycopg 3 ``AsyncConnection``; the shard as ``app_rw``, production as
``orchestrator``) and open their own transactions (``conn.transaction()``; pass autocommit
connections, as :func:`unde_common.db.connect` makes, so each step commits where it says).

Ordering across the two databases (there is no distributed transaction): the **tombstone is
written to production first**, then the shard is changed. A failure between the two leaves a
tombstone for a message that is still intact; running the same call again finishes the job (every
step is idempotent: ``ON CONFLICT DO NOTHING``, updates that set fixed values, deletes), and a shard
restored from backup gets the deletion replayed from the registry by ``apply_deletions``. The other
order could lose a deletion: a shard change committed without its tombstone is undone by the next
restore and nobody knows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from unde_common.s3 import ObjectStore

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from mypy_boto3_s3 import S3Client

__all__ = [
    "PERSONA_TABLES",
    "EraseReport",
    "ForgetResult",
    "HardDeleteResult",
    "TombstoneCopy",
    "copy_registry_to_object_storage",
    "erase_user",
    "hard_delete",
    "redis_user_keys",
    "soft_forget",
]

log = logging.getLogger(__name__)

#: the Persona Agent's per-user tables on the shard (files/sql/unde_shard 0002, 0004, 0005)
PERSONA_TABLES: Final[tuple[str, ...]] = (
    "relationship_stage",
    "persona_temp_blocks",
    "signal_daily_deltas",
    "persona_profiles",
    "persona_applied_flushes",
)
_TOMBSTONE_CHUNK = 5000
_REDIS_DELETE_CHUNK = 500


async def _fetch(conn: AsyncConnection[Any], query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def _rowcount(conn: AsyncConnection[Any], query: str, params: tuple[Any, ...]) -> int:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        return max(cur.rowcount, 0)


# --------------------------------------------------------------------------- soft forget


@dataclass(frozen=True)
class ForgetResult:
    """What a soft forget changed (``unde_forget_cascade_*`` counts)."""

    found: bool
    changed: bool
    snippets_nullified: int = 0
    knowledge_deactivated: int = 0


_SOFT_FORGET = (
    "WITH old AS (SELECT id, memory_snippet IS NOT NULL AS had_snippet, "
    "NOT is_forgotten OR embedding IS NOT NULL OR memory_snippet IS NOT NULL AS live "
    "FROM messages WHERE conversation_id = %s AND id = %s FOR UPDATE) "
    "UPDATE messages m SET is_forgotten = TRUE, embedding = NULL, memory_snippet = NULL FROM old "
    "WHERE m.conversation_id = %s AND m.id = old.id RETURNING old.had_snippet, old.live"
)
#: "forget this look": the artefact's response_description goes too
_SOFT_FORGET_ARTIFACT = (
    "WITH old AS (SELECT id, memory_snippet IS NOT NULL AS had_snippet, "
    "NOT is_forgotten OR embedding IS NOT NULL OR memory_snippet IS NOT NULL "
    "OR response_description IS NOT NULL AS live "
    "FROM messages WHERE conversation_id = %s AND id = %s FOR UPDATE) "
    "UPDATE messages m SET is_forgotten = TRUE, embedding = NULL, memory_snippet = NULL, "
    "response_description = NULL FROM old "
    "WHERE m.conversation_id = %s AND m.id = old.id RETURNING old.had_snippet, old.live"
)
_DEACTIVATE_KNOWLEDGE = (
    "UPDATE user_knowledge SET is_active = FALSE WHERE is_active AND source_message_id = %s "
    "AND (source_conversation_id IS NULL OR source_conversation_id = %s)"
)
_DELETE_KNOWLEDGE = (
    "DELETE FROM user_knowledge WHERE source_message_id = %s "
    "AND (source_conversation_id IS NULL OR source_conversation_id = %s)"
)
_TOMBSTONE = (
    "INSERT INTO deleted_messages_registry (conversation_id, message_id, user_id, deleted_at, reason) "
    "VALUES (%s, %s, %s, now(), %s) ON CONFLICT (conversation_id, message_id) DO NOTHING"
)
_TOMBSTONES_OF_USER = (
    "INSERT INTO deleted_messages_registry (conversation_id, message_id, user_id, deleted_at, reason) "
    "SELECT %s, m, %s, now(), 'gdpr_erase' FROM unnest(%s::uuid[]) AS m "
    "ON CONFLICT (conversation_id, message_id) DO NOTHING"
)


async def soft_forget(
    shard_conn: AsyncConnection[Any],
    conversation_id: UUID,
    message_id: UUID,
    *,
    forget_artifact: bool = False,
) -> ForgetResult:
    """ "Forget this": the message leaves retrieval (``is_forgotten``, embedding and snippet NULL) and
    the facts extracted from it are deactivated. Its text stays (the user still sees it). The
    artefact's ``response_description`` is dropped only with ``forget_artifact`` (the explicit
    "forget this look", spec 02 §21). A second call changes nothing."""
    async with shard_conn.transaction():
        rows = await _fetch(
            shard_conn,
            _SOFT_FORGET_ARTIFACT if forget_artifact else _SOFT_FORGET,
            (conversation_id, message_id, conversation_id),
        )
        if not rows:
            return ForgetResult(found=False, changed=False)
        deactivated = await _rowcount(
            shard_conn,
            _DEACTIVATE_KNOWLEDGE,
            (message_id, conversation_id),
        )
    had_snippet, live = rows[0]
    return ForgetResult(
        found=True,
        changed=bool(live) or deactivated > 0,
        snippets_nullified=int(bool(had_snippet)),
        knowledge_deactivated=deactivated,
    )


# --------------------------------------------------------------------------- hard delete


@dataclass(frozen=True)
class HardDeleteResult:
    """What a hard delete changed."""

    found: bool
    changed: bool
    tombstone_written: bool = False
    knowledge_deleted: int = 0
    snippets_nullified: int = 0


async def _conversation_owner(shard_conn: AsyncConnection[Any], conversation_id: UUID) -> UUID | None:
    rows = await _fetch(shard_conn, "SELECT user_id FROM conversations WHERE id = %s", (conversation_id,))
    return rows[0][0] if rows else None


async def hard_delete(
    shard_conn: AsyncConnection[Any],
    production_conn: AsyncConnection[Any],
    conversation_id: UUID,
    message_id: UUID,
    user_id: UUID,
    reason: str = "user_request",
) -> HardDeleteResult:
    """Delete a message's content for good (spec 02 §14 Hard Delete): the facts extracted from it
    are deleted, the row stays as a ``'[deleted]'`` tombstone (tsv follows, being generated) with
    embedding, snippet, confidence, description and reply_to NULL, ``is_forgotten``,
    ``deleted_at``; the pair is registered in production ``deleted_messages_registry``.

    Order: the tombstone is committed in production **first** (``ON CONFLICT DO NOTHING``), then the
    shard changes in one transaction. Interrupted between the two: call again (every step is
    idempotent); a restore replays it from the registry. A message that does not exist writes
    nothing; a conversation of another user raises ``ValueError``."""
    owner = await _conversation_owner(shard_conn, conversation_id)
    if owner is not None and owner != user_id:
        raise ValueError(f"conversation {conversation_id} does not belong to user {user_id}")
    exists = await _fetch(
        shard_conn,
        "SELECT content = '[deleted]' AND deleted_at IS NOT NULL FROM messages "
        "WHERE conversation_id = %s AND id = %s",
        (conversation_id, message_id),
    )
    if not exists:
        return HardDeleteResult(found=False, changed=False)
    async with production_conn.transaction():
        written = await _rowcount(
            production_conn,
            _TOMBSTONE,
            (conversation_id, message_id, user_id, reason),
        )
    async with shard_conn.transaction():
        knowledge = await _rowcount(
            shard_conn,
            _DELETE_KNOWLEDGE,
            (message_id, conversation_id),
        )
        rows = await _fetch(
            shard_conn,
            "WITH old AS (SELECT id, memory_snippet IS NOT NULL AS had_snippet FROM messages "
            "WHERE conversation_id = %s AND id = %s FOR UPDATE) "
            "UPDATE messages m SET content = '[deleted]', embedding = NULL, memory_snippet = NULL, "
            "memory_confidence = NULL, response_description = NULL, reply_to_id = NULL, is_forgotten = TRUE, "
            "deleted_at = COALESCE(m.deleted_at, now()) FROM old "
            "WHERE m.conversation_id = %s AND m.id = old.id RETURNING old.had_snippet",
            (conversation_id, message_id, conversation_id),
        )
    already_deleted = bool(exists[0][0])
    snippets = int(bool(rows and rows[0][0]))
    return HardDeleteResult(
        found=True,
        changed=bool(written) or knowledge > 0 or not already_deleted,
        tombstone_written=bool(written),
        knowledge_deleted=knowledge,
        snippets_nullified=snippets,
    )


# --------------------------------------------------------------------------- GDPR erase


@dataclass
class EraseReport:
    """What :func:`erase_user` removed, per kind; all zero (``changed`` false) on a repeat."""

    user_id: str
    tombstones_written: int = 0
    messages_deleted: int = 0
    conversations_deleted: int = 0
    user_knowledge_deleted: int = 0
    user_keys_deleted: int = 0
    persona_rows_deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PERSONA_TABLES, 0))
    routing_table_deleted: int = 0
    recognition_requests_deleted: int = 0
    media_objects_deleted: int = 0
    redis_keys_deleted: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        counts = [
            self.tombstones_written,
            self.messages_deleted,
            self.conversations_deleted,
            self.user_knowledge_deleted,
            self.user_keys_deleted,
            self.routing_table_deleted,
            self.recognition_requests_deleted,
            self.media_objects_deleted,
            *self.persona_rows_deleted.values(),
            *self.redis_keys_deleted.values(),
        ]
        return any(counts)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, **asdict(self)}


async def _erase_on_shard(
    shard_conn: AsyncConnection[Any],
    production_conn: AsyncConnection[Any],
    user_id: UUID,
    report: EraseReport,
) -> None:
    conversations = [
        row[0]
        for row in await _fetch(shard_conn, "SELECT id FROM conversations WHERE user_id = %s", (user_id,))
    ]
    # 1. tombstones first (production), so a failure later is finished by a re-run or a restore replay
    for conversation_id in conversations:
        message_ids = [
            row[0]
            for row in await _fetch(
                shard_conn,
                "SELECT id FROM messages WHERE conversation_id = %s ORDER BY id",
                (conversation_id,),
            )
        ]
        for start in range(0, len(message_ids), _TOMBSTONE_CHUNK):
            chunk = message_ids[start : start + _TOMBSTONE_CHUNK]
            async with production_conn.transaction():
                report.tombstones_written += await _rowcount(
                    production_conn,
                    _TOMBSTONES_OF_USER,
                    (conversation_id, user_id, chunk),
                )
    # 2. the shard, in one transaction: messages, conversation, knowledge, key (crypto-shred), persona
    async with shard_conn.transaction():
        for conversation_id in conversations:
            report.messages_deleted += await _rowcount(
                shard_conn, "DELETE FROM messages WHERE conversation_id = %s", (conversation_id,)
            )
        report.conversations_deleted += await _rowcount(
            shard_conn, "DELETE FROM conversations WHERE user_id = %s", (user_id,)
        )
        report.user_knowledge_deleted += await _rowcount(
            shard_conn, "DELETE FROM user_knowledge WHERE user_id = %s", (user_id,)
        )
        report.user_keys_deleted += await _rowcount(
            shard_conn, "DELETE FROM user_keys WHERE user_id = %s", (user_id,)
        )
        for table in PERSONA_TABLES:
            # table names come from the constant above, never from input
            report.persona_rows_deleted[table] += await _rowcount(
                shard_conn,
                f"DELETE FROM {table} WHERE user_id = %s",  # noqa: S608
                (user_id,),
            )


def redis_user_keys(user_id: UUID) -> str:
    """The SCAN pattern of a user's Redis keys: every key that names the user id. Known keys:
    mood_agent ``mood:last:<user>`` (DB 9; its value names ``mood:frame:<frame id>``, deleted too),
    persona_agent ``persona:buf:<user>:<exchange>``, ``persona:bufidx:<user>``,
    ``persona:lock:<user>``, ``persona:ver:<user>``, ``persona:idem:flush:<user>:<exchange>``,
    ``persona:result:flush:<user>:<exchange>`` (DB 13). Shard routing (DB 12) and the context
    agent's caches (DB 15) are keyed by shard / place, not by user."""
    return f"*{user_id}*"


def _redis_label(client: aioredis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', 'unix')}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"


async def _erase_redis(client: aioredis.Redis, user_id: UUID) -> int:
    keys: set[bytes | str] = set()
    async for key in client.scan_iter(match=redis_user_keys(user_id), count=1000):
        keys.add(key)
        name = key.decode() if isinstance(key, bytes) else key
        if name.startswith("mood:last:"):
            raw = await client.get(key)
            try:
                frame_id = json.loads(raw).get("mood_frame_id") if raw is not None else None
            except (ValueError, AttributeError):
                frame_id = None
            if isinstance(frame_id, str) and frame_id:
                keys.add(f"mood:frame:{frame_id}")
    deleted = 0
    ordered = list(keys)
    for start in range(0, len(ordered), _REDIS_DELETE_CHUNK):
        deleted += int(await client.delete(*ordered[start : start + _REDIS_DELETE_CHUNK]))
    return deleted


def _erase_media(s3: S3Client, bucket: str, user_id: UUID) -> int:
    store = ObjectStore(s3, bucket)
    deleted = 0
    for key in list(store.list_keys(f"{user_id}/")):
        store.delete(key)
        deleted += 1
    return deleted


async def erase_user(
    shard_conns: Sequence[AsyncConnection[Any]],
    production_conn: AsyncConnection[Any],
    user_id: UUID,
    *,
    s3: S3Client | None,
    media_bucket: str = "unde-user-media",
    redis_clients: Sequence[aioredis.Redis] = (),
) -> EraseReport:
    """GDPR erase of one user, everywhere this side holds their data; returns the counts.

    Per shard (every shard given is searched: the user lives on one): each message of the user's
    conversation gets a tombstone ``(conversation_id, message_id, user_id, reason 'gdpr_erase')``
    in production first; then, in one shard transaction, the message rows are **deleted outright**
    (for a whole-user erase no ``'[deleted]'`` row is kept: nothing remains to show, and the
    registry still lets ``apply_deletions`` replay the erase after a restore), the conversation,
    every ``user_knowledge`` row and the ``user_keys`` row (crypto-shredding: any copy of the facts
    in a backup is unreadable without the DEK), and the Persona Agent's rows (:data:`PERSONA_TABLES`).
    Then production ``routing_table`` and ``recognition_requests`` rows of the user, the Object
    Storage objects under ``<media_bucket>/<user_id>/`` (``s3`` None: not touched) and, in each Redis
    client's DB, every key naming the user (:func:`redis_user_keys`, SCAN, never KEYS).

    Every step is idempotent: a failure anywhere is finished by running it again, and a repeat on a
    user already erased finds nothing and reports zeros."""
    report = EraseReport(user_id=str(user_id))
    for shard_conn in shard_conns:
        await _erase_on_shard(shard_conn, production_conn, user_id, report)
    async with production_conn.transaction():
        report.routing_table_deleted = await _rowcount(
            production_conn, "DELETE FROM routing_table WHERE user_id = %s", (user_id,)
        )
        report.recognition_requests_deleted = await _rowcount(
            production_conn, "DELETE FROM recognition_requests WHERE user_id = %s", (user_id,)
        )
    if s3 is not None:
        report.media_objects_deleted = await asyncio.to_thread(_erase_media, s3, media_bucket, user_id)
    for client in redis_clients:
        label = _redis_label(client)
        report.redis_keys_deleted[label] = report.redis_keys_deleted.get(label, 0) + await _erase_redis(
            client, user_id
        )
    log.info(
        "user erased",
        extra={
            "user_id": str(user_id),
            "changed": report.changed,
            "messages_deleted": report.messages_deleted,
        },
    )
    return report


# --------------------------------------------------------------------------- tombstone copy


@dataclass(frozen=True)
class TombstoneCopy:
    """The day's registry object: its key, how many tombstones it holds, whether it was (re)written."""

    key: str
    rows: int
    changed: bool


def _tombstone_key(key_prefix: str, day: dt.date) -> str:
    return f"{key_prefix}{day.isoformat()}.jsonl"


async def copy_registry_to_object_storage(
    production_conn: AsyncConnection[Any], s3: S3Client, bucket: str, key_prefix: str, day: dt.date
) -> TombstoneCopy:
    """Copy the tombstones registered on ``day`` (UTC, by ``deleted_at``) to ``<key_prefix><day>.jsonl``
    (spec: registry in production DB + a copy in Object Storage): one JSON object per line
    (``conversation_id, message_id, user_id, deleted_at, reason``), sorted, so the same rows give
    the same bytes. The object is written only when it is missing or differs (a day copied before
    it ended gets the later rows on the next run); a repeat is a no-op (``changed`` false). A day
    without tombstones gets an empty object, so every day's copy exists."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
    rows = await _fetch(
        production_conn,
        "SELECT conversation_id, message_id, user_id, deleted_at, reason FROM deleted_messages_registry "
        "WHERE deleted_at >= %s AND deleted_at < %s ORDER BY deleted_at, conversation_id, message_id",
        (start, start + dt.timedelta(days=1)),
    )
    body = "".join(
        json.dumps(
            {
                "conversation_id": str(conv),
                "message_id": str(msg),
                "user_id": None if user is None else str(user),
                "deleted_at": deleted_at.astimezone(dt.UTC).isoformat(),
                "reason": reason,
            },
            sort_keys=True,
        )
        + "\n"
        for conv, msg, user, deleted_at, reason in rows
    ).encode()
    key = _tombstone_key(key_prefix, day)
    store = ObjectStore(s3, bucket)

    def sync() -> bool:
        if store.head(key) is not None and store.get_bytes(key) == body:
            return False
        store.put_bytes(key, body, content_type="application/x-ndjson")
        return True

    changed = await asyncio.to_thread(sync)
    return TombstoneCopy(key=key, rows=len(rows), changed=changed)
