"""Message enrichment and the orchestrator's scheduled jobs (spec 01 §18, spec 02 §13/§14).

``enrich(runtime, conversation_id, message_id, user_id)`` — one stored user message:

1. read it; a message that is not the user's, is forgotten, or is already ``done``/``skipped`` is
   left alone (a repeated task is a no-op);
2. ``enrichment_attempts`` + 1 (committed first, so a crash still counts the try);
3. salience check (spec: > 15 characters, not only emoji, the user's) → not salient:
   ``is_embeddable = false``, ``skipped``;
4. memory classification (type + confidence), ``memory_snippet``, the embedding
   (``search_document``); all written in one UPDATE guarded by ``NOT is_forgotten`` (a forget that
   came in between wins), ``done``;
5. instant fact extraction into encrypted ``user_knowledge`` (``source_message_id`` = this
   message: the raw message stays the only truth), superseding older facts of the same attribute.

An embedding failure leaves the message ``pending`` with ``enrichment_error`` (the task is retried;
after the third try it is ``failed``); the 6-hourly ``enrichment_ttl_recovery`` re-queues pending
messages older than 1 h with fewer than 3 tries (LIMIT 500 per shard).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from psycopg.rows import dict_row

from llm_orchestrator import extraction, memory
from llm_orchestrator.crypto import MasterKeyRing
from llm_orchestrator.knowledge import store_fact
from llm_orchestrator.store import vector_text
from llm_orchestrator.text_rules import language_of

__all__ = [
    "MAX_ATTEMPTS",
    "EmbeddingFailedError",
    "enrich",
    "extraction_review_sample",
    "life_event_expiry",
    "ttl_recovery",
]

log = logging.getLogger(__name__)

#: tries per message (spec 01: retry < 3)
MAX_ATTEMPTS = 3


class EmbeddingFailedError(RuntimeError):
    """The embedding provider failed for a message; the task is retried."""


async def enrich(
    rt: Any, conversation_id: UUID, message_id: UUID, user_id: UUID, *, priority: str = "live"
) -> str:
    """Enrich one message; returns its enrichment_status afterwards."""
    s = rt.settings
    pool = await rt.router.pool_for_user(user_id)
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "UPDATE messages SET enrichment_attempts = enrichment_attempts + 1"
            " WHERE conversation_id = %s AND id = %s AND role = 'user' AND NOT is_forgotten"
            " AND enrichment_status = 'pending' AND enrichment_attempts < %s"
            " RETURNING content, created_at, enrichment_attempts",
            (conversation_id, message_id, MAX_ATTEMPTS),
        )
        row = await cur.fetchone()
        await conn.commit()
        if row is None:
            status = await (
                await conn.execute(
                    "SELECT enrichment_status FROM messages WHERE conversation_id = %s AND id = %s",
                    (conversation_id, message_id),
                )
            ).fetchone()
            return str(status[0]) if status else "missing"
        content: str = row["content"]
        created_at: dt.datetime = row["created_at"]
        attempts: int = row["enrichment_attempts"]

        if not memory.salience_check(content, "user"):
            await conn.execute(
                "UPDATE messages SET is_embeddable = false, enrichment_status = 'skipped',"
                " enriched_at = now(), enrichment_error = NULL WHERE conversation_id = %s AND id = %s",
                (conversation_id, message_id),
            )
            await conn.commit()
            return "skipped"

        memory_type, confidence = memory.classify_memory(content)
        snippet = memory.memory_snippet(content)
        rt.metrics.embedding_ingestion.inc()
        try:
            vectors = await rt.embedder.embed([content], s.embedding_input_type_document)
            embedding = vectors[0]
        except Exception as exc:
            rt.metrics.embedding_ingestion_errors.inc()
            final = attempts >= MAX_ATTEMPTS
            await conn.execute(
                "UPDATE messages SET enrichment_error = %s, enrichment_status = %s"
                " WHERE conversation_id = %s AND id = %s AND enrichment_status = 'pending'",
                (
                    f"embedding: {type(exc).__name__}"[:200],
                    "failed" if final else "pending",
                    conversation_id,
                    message_id,
                ),
            )
            await conn.commit()
            if final:
                log.error(
                    "enrichment failed for good", extra={"message_id": str(message_id), "attempts": attempts}
                )
                return "failed"
            raise EmbeddingFailedError(
                f"embedding of message {message_id} failed: {type(exc).__name__}"
            ) from exc

        async with conn.transaction():
            updated = await conn.execute(
                "UPDATE messages SET embedding = %s::vector, is_embeddable = true, memory_type = %s,"
                " memory_confidence = %s, memory_snippet = %s, enrichment_status = 'done',"
                " enriched_at = now(), enrichment_error = NULL"
                " WHERE conversation_id = %s AND id = %s AND NOT is_forgotten",
                (vector_text(embedding), memory_type, confidence, snippet, conversation_id, message_id),
            )
            if updated.rowcount:
                facts = extraction.extract_facts(
                    content,
                    now=created_at,
                    tz=ZoneInfo(s.diversity_timezone),
                    ttl_days=s.life_event_ttl_days,
                    max_chars=s.max_message_chars,
                )
                language = language_of(content)
                ring: MasterKeyRing = rt.keyring.ring()
                for fact in facts:
                    await store_fact(
                        conn,
                        user_id,
                        ring,
                        fact.knowledge_type,
                        fact.data,
                        confidence=fact.confidence,
                        source_message_id=message_id,
                        source_conversation_id=conversation_id,
                        expires_at=fact.expires_at,
                        supersede_key=fact.supersede_key,
                    )
                    rt.metrics.instant_extraction.labels(fact.knowledge_type, language).inc()
        rt.metrics.enrichment_latency_s.labels(priority).observe(
            max(0.0, (dt.datetime.now(dt.UTC) - created_at).total_seconds())
        )
        return "done" if updated.rowcount else "skipped"


async def ttl_recovery(rt: Any, send: Any) -> dict[str, int]:
    """Every 6 h: pending user messages older than 1 h with < 3 tries → re-queued (LIMIT 500 per
    shard); pending ones out of tries → ``failed``. Also sets the gauges ``unde_orphan_messages``
    and ``memory_snippet_null_rate`` per shard. ``send(conversation_id, message_id, user_id)``
    queues one enrichment."""
    queued = failed = 0
    for index in range(rt.settings.shard_count):
        pool = await rt.router.pool(index)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE messages SET enrichment_status = 'failed',"
                " enrichment_error = COALESCE(enrichment_error, 'out of tries')"
                " WHERE role = 'user' AND enrichment_status = 'pending'"
                " AND enrichment_attempts >= %s",
                (MAX_ATTEMPTS,),
            )
            failed += cur.rowcount
            rows = await (
                await conn.execute(
                    "SELECT m.conversation_id, m.id, c.user_id FROM messages m"
                    " JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE m.role = 'user' AND m.enrichment_status = 'pending'"
                    " AND m.created_at < now() - interval '1 hour' AND m.enrichment_attempts < %s"
                    " ORDER BY m.created_at LIMIT 500",
                    (MAX_ATTEMPTS,),
                )
            ).fetchall()
            stats = await (
                await conn.execute(
                    "SELECT count(*) FILTER (WHERE memory_snippet IS NULL), count(*) FROM messages"
                    " WHERE role = 'user' AND is_embeddable AND NOT is_forgotten"
                    " AND created_at > now() - interval '7 days'"
                )
            ).fetchone()
            await conn.commit()
        for conversation_id, message_id, user_id in rows:
            await send(conversation_id, message_id, user_id)
            queued += 1
        rt.metrics.orphan_messages.labels(str(index)).set(len(rows))
        nulls, total = stats if stats else (0, 0)
        rt.metrics.memory_snippet_null_rate.labels(str(index)).set(nulls / total if total else 0.0)
    rt.metrics.enrichment_backfill.inc(queued)
    return {"queued": queued, "failed": failed}


async def life_event_expiry(rt: Any) -> dict[str, int]:
    """Daily 03:00: life_event facts past ``expires_at`` → ``is_active = false`` on every shard."""
    expired = 0
    for index in range(rt.settings.shard_count):
        pool = await rt.router.pool(index)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE user_knowledge SET is_active = false WHERE is_active AND expires_at < now()"
            )
            expired += cur.rowcount
            await conn.commit()
    rt.metrics.life_events_expired.inc(expired)
    return {"expired": expired}


async def extraction_review_sample(rt: Any, share: float = 0.01) -> dict[str, Any]:
    """Daily 06:00: a 1 % random sample of the facts extracted from chat in the last 24 h, logged by
    row id and source message for review (ids only: the facts stay encrypted). The review tool of
    phase 2 reads these log lines; nothing is changed."""
    sampled: list[dict[str, str]] = []
    for index in range(rt.settings.shard_count):
        pool = await rt.router.pool(index)
        async with pool.connection() as conn:
            total_row = await (
                await conn.execute(
                    "SELECT count(*) FROM user_knowledge WHERE extracted_from = 'chat_pipeline'"
                    " AND created_at > now() - interval '24 hours'"
                )
            ).fetchone()
            total = int(total_row[0]) if total_row else 0
            want = math.ceil(total * share)
            if want:
                rows = await (
                    await conn.execute(
                        "SELECT id, knowledge_type, source_conversation_id, source_message_id"
                        " FROM user_knowledge WHERE extracted_from = 'chat_pipeline'"
                        " AND created_at > now() - interval '24 hours'"
                        " ORDER BY random() LIMIT %s",
                        (want,),
                    )
                ).fetchall()
                for fact_id, kind, conv, msg in rows:
                    sampled.append(
                        {
                            "shard": str(index),
                            "id": str(fact_id),
                            "type": kind,
                            "conversation_id": str(conv),
                            "message_id": str(msg),
                        }
                    )
            await conn.commit()
    for item in sampled:
        log.info("extraction review sample", extra=item)
    rt.metrics.extraction_review_sampled.inc(len(sampled))
    return {"sampled": len(sampled)}
