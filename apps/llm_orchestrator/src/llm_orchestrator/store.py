"""The orchestrator's reads and writes of Chat History on the user's shard and of the catalog on the
Production DB (psycopg 3, async; the caller holds the connection and the transaction).

A message is identified by the pair (conversation_id, id) everywhere; ids of a turn's messages come
from the client (``user_message_id``, ``assistant_message_id``), so every insert is
``ON CONFLICT DO NOTHING`` and a retried task never writes a message twice.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = [
    "ConversationMismatchError",
    "MessageRow",
    "artifact",
    "catalog_context",
    "conversation_for",
    "hybrid_search",
    "insert_message",
    "memory_flags",
    "recent_artifacts",
    "recent_messages",
    "vector_text",
]

Conn = AsyncConnection[Any]


class ConversationMismatchError(ValueError):
    """The client named a conversation that is not this user's."""


@cache
def hybrid_search_sql() -> str:
    """The canonical hybrid search (``sql/hybrid_search.sql`` in this package)."""
    return resources.files("llm_orchestrator").joinpath("sql/hybrid_search.sql").read_text("utf-8")


def vector_text(vector: list[float]) -> str:
    """pgvector's text form ``[0.1,-0.2,...]``."""
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: UUID
    role: str
    content: str
    created_at: dt.datetime
    response_description: str | None
    memory_refs: int | None


async def conversation_for(conn: Conn, user_id: UUID, conversation_id: UUID | None) -> tuple[UUID, bool]:
    """The user's one conversation, created when the user has none (an unknown user starts a new
    conversation; ``conversation_id`` from the client becomes its id). Returns (id, created).
    A ``conversation_id`` that is not the user's raises :class:`ConversationMismatchError`."""
    row = await (
        await conn.execute(
            "INSERT INTO conversations (id, user_id) VALUES (COALESCE(%s, gen_random_uuid()), %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (conversation_id, user_id),
        )
    ).fetchone()
    created = row is not None
    if row is None:
        row = await (
            await conn.execute("SELECT id FROM conversations WHERE user_id = %s", (user_id,))
        ).fetchone()
    if row is None:
        # the id was taken by another user's conversation
        raise ConversationMismatchError(f"conversation_id {conversation_id} belongs to another user")
    found: UUID = row[0]
    if conversation_id is not None and found != conversation_id:
        raise ConversationMismatchError(
            f"conversation_id {conversation_id} is not the conversation of user {user_id}"
        )
    return found, created


async def insert_message(
    conn: Conn,
    *,
    conversation_id: UUID,
    message_id: UUID,
    role: str,
    content: str,
    **columns: Any,
) -> bool:
    """INSERT one message ``ON CONFLICT DO NOTHING``; True when this call wrote it (the
    conversation's ``message_count`` moves only then). ``columns``: any other messages column
    (``mood_frame`` and ``media_urls`` as Python objects)."""
    cols = {"id": message_id, "conversation_id": conversation_id, "role": role, "content": content}
    for name, value in columns.items():
        if value is None:
            continue
        cols[name] = json.dumps(value) if name in ("mood_frame", "media_urls") else value
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    row = await (
        await conn.execute(
            f"INSERT INTO messages ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING RETURNING id",  # noqa: S608
            list(cols.values()),
        )
    ).fetchone()
    if row is None:
        return False
    await conn.execute(
        "UPDATE conversations SET message_count = message_count + 1, updated_at = now() WHERE id = %s",
        (conversation_id,),
    )
    return True


async def recent_messages(
    conn: Conn,
    conversation_id: UUID,
    limit: int,
    exclude: tuple[UUID, ...] = (),
    before: dt.datetime | None = None,
) -> list[MessageRow]:
    """The last ``limit`` messages, oldest first; forgotten and deleted ones never. ``before``: only
    messages older than that (a retried turn sees the history as its first run did, not its own
    reply)."""
    cur = await conn.execute(
        "SELECT id, role, content, created_at, response_description, memory_refs FROM messages"
        " WHERE conversation_id = %s AND NOT is_forgotten AND deleted_at IS NULL AND id <> ALL(%s)"
        " AND created_at < COALESCE(%s, 'infinity'::timestamptz)"
        " ORDER BY created_at DESC LIMIT %s",
        (conversation_id, list(exclude), before, limit),
    )
    rows = [MessageRow(*r) for r in await cur.fetchall()]
    rows.reverse()
    return rows


async def created_at(conn: Conn, conversation_id: UUID, message_id: UUID) -> dt.datetime | None:
    """When the message was stored (None: no such message)."""
    row = await (
        await conn.execute(
            "SELECT created_at FROM messages WHERE conversation_id = %s AND id = %s",
            (conversation_id, message_id),
        )
    ).fetchone()
    return row[0] if row else None


async def recent_artifacts(
    conn: Conn, conversation_id: UUID, since: dt.datetime
) -> list[tuple[UUID, dt.datetime]]:
    """Assistant artefacts (rows with a response_description) since ``since``, oldest first."""
    cur = await conn.execute(
        "SELECT id, created_at FROM messages WHERE conversation_id = %s AND role = 'assistant'"
        " AND response_description IS NOT NULL AND NOT is_forgotten AND created_at >= %s"
        " ORDER BY created_at",
        (conversation_id, since),
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def artifact(conn: Conn, conversation_id: UUID, message_id: UUID) -> dict[str, Any] | None:
    """The artefact ``message_id`` of this conversation (PK lookup) or None."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT id, response_description, created_at FROM messages WHERE conversation_id = %s AND id = %s"
        " AND role = 'assistant' AND response_description IS NOT NULL AND NOT is_forgotten",
        (conversation_id, message_id),
    )
    return await cur.fetchone()


async def memory_flags(conn: Conn, conversation_id: UUID, n: int) -> list[bool]:
    """For the last ``n`` assistant replies (newest first): did the reply carry memories."""
    cur = await conn.execute(
        "SELECT COALESCE(memory_refs, 0) > 0 FROM messages WHERE conversation_id = %s AND role = 'assistant'"
        " ORDER BY created_at DESC LIMIT %s",
        (conversation_id, n),
    )
    return [bool(r[0]) for r in await cur.fetchall()]


async def hybrid_search(
    conn: Conn,
    conversation_id: UUID,
    embedding: list[float] | None,
    text: str,
    *,
    threshold: float,
    top_k: int,
) -> list[dict[str, Any]]:
    """Episodes of the canonical hybrid search. Without an embedding (the embedding provider
    failed) the turn still finds exact tokens: the vector branch gets a fixed unit vector and a
    threshold no cosine score reaches (2.0), so only full-text hits survive. (A zero vector would
    not do: its cosine distance is NaN, and NaN compares greater than any number in PostgreSQL.)"""
    if embedding:
        vec = vector_text(embedding)
    else:
        vec, threshold = "[1" + ",0" * 1023 + "]", 2.0
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        hybrid_search_sql(),
        {
            "conversation_id": conversation_id,
            "query_embedding": vec,
            "query_text": text,
            "similarity_threshold": threshold,
            "top_k": top_k,
        },
    )
    return list(await cur.fetchall())


async def catalog_context(conn: Conn, brands: list[str], limit: int) -> list[dict[str, Any]]:
    """In-stock products of the given brands, newest sync first (``idx_products_in_stock``)."""
    if not brands:
        return []
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "SELECT sku, brand, name, price::float AS price, currency, colour, category FROM products"
        " WHERE in_stock AND brand = ANY(%s) ORDER BY synced_at DESC LIMIT %s",
        (brands, limit),
    )
    return list(await cur.fetchall())
