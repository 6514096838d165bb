"""The encrypted user knowledge on the user's shard (``user_keys``, ``user_knowledge``; spec 02 §14).

Facts are derived data: the raw messages stay the only truth, and every fact points at its evidence
(``source_conversation_id``, ``source_message_id``), which soft / hard forget cascade on
(:mod:`llm_orchestrator.forget`). Payloads are the JSON of the fact's ``data`` dict, encrypted
with the user's DEK (:mod:`llm_orchestrator.crypto`); only the metadata (type, version, confidence,
evidence, validity) is plain, for indexing.

Every function takes a psycopg 3 ``AsyncConnection`` of the shard (``app_rw`` or ``knowledge_rw``)
and runs its writes in ``conn.transaction()``: its own transaction on an autocommit connection, a
savepoint inside the caller's transaction otherwise.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final
from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from llm_orchestrator.crypto import (
    DecryptError,
    DekUnwrapError,
    EncryptedFact,
    MasterKeyRing,
    UnknownKeyVersionError,
    decrypt_fact,
    encrypt_fact,
    generate_dek,
    unwrap_dek,
    wrap_dek,
)

__all__ = [
    "EXTRACTED_FROM",
    "KNOWLEDGE_TYPES",
    "Fact",
    "KnowledgeLoad",
    "load_knowledge",
    "store_fact",
    "user_dek",
]

log = logging.getLogger(__name__)

#: ``user_knowledge.knowledge_type`` values (the schema's list, files/sql/unde_shard/0002)
KNOWLEDGE_TYPES: Final[frozenset[str]] = frozenset(
    {
        "style_profile",
        "body_params",
        "brand_preferences",
        "budget",
        "life_event",
        "behavior_patterns",
        "emotional_patterns",
        "color_preferences",
    }
)
#: ``user_knowledge.extracted_from`` values (schema comment)
EXTRACTED_FROM: Final[frozenset[str]] = frozenset({"chat_pipeline", "onboarding", "explicit_input"})


def _check_type(knowledge_type: str) -> None:
    if knowledge_type not in KNOWLEDGE_TYPES:
        raise ValueError(
            f"unknown knowledge_type {knowledge_type!r}; known: {', '.join(sorted(KNOWLEDGE_TYPES))}"
        )


async def _fetch(conn: AsyncConnection[Any], query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def user_dek(
    conn: AsyncConnection[Any], user_id: UUID, ring: MasterKeyRing, *, create: bool
) -> bytes | None:
    """The user's DEK, unwrapped with the ring version its row names; ``None`` when the user has
    none and ``create`` is false. With ``create`` a new DEK is wrapped under ``ring.current`` and
    inserted ``ON CONFLICT DO NOTHING``, then the row is read again: two workers creating the key
    at once both end up with the one that was stored. Raises :class:`UnknownKeyVersionError` /
    :class:`DekUnwrapError` when the stored DEK cannot be unwrapped."""
    query = "SELECT encrypted_dek, master_key_version FROM user_keys WHERE user_id = %s"
    rows = await _fetch(conn, query, (user_id,))
    if not rows and create:
        blob, version = wrap_dek(ring, user_id, generate_dek())
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO user_keys (user_id, encrypted_dek, master_key_version) VALUES (%s, %s, %s) "
                "ON CONFLICT (user_id) DO NOTHING",
                (user_id, blob, version),
            )
        rows = await _fetch(conn, query, (user_id,))
    if not rows:
        return None
    blob, version = rows[0]
    return unwrap_dek(ring, user_id, bytes(blob), int(version))


@dataclass(frozen=True)
class Fact:
    """One decrypted ``user_knowledge`` row."""

    id: UUID
    knowledge_type: str
    data: dict[str, Any]
    confidence: float | None
    source_message_id: UUID | None
    source_conversation_id: UUID | None
    created_at: datetime
    expires_at: datetime | None
    version: int = 1


@dataclass
class KnowledgeLoad:
    """What :func:`load_knowledge` read: the facts that decrypted, how many rows did not
    (``user_knowledge_decrypt_errors``) and the decrypt time in ms of each fact that decrypted
    (``user_knowledge_decrypt_latency_ms``; rows tried = ``len(decrypt_ms) + decrypt_errors``)."""

    facts: list[Fact] = field(default_factory=list)
    decrypt_errors: int = 0
    decrypt_ms: list[float] = field(default_factory=list)
    #: set when the user's DEK itself could not be unwrapped (every row then counts as an error)
    dek_error: str | None = None


def _confidence(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


async def load_knowledge(conn: AsyncConnection[Any], user_id: UUID, ring: MasterKeyRing) -> KnowledgeLoad:
    """The user's active facts that have not expired, oldest first. A row that does not
    authenticate (a changed byte in the ciphertext, nonce or tag, or a ciphertext moved to another
    row) is counted in ``decrypt_errors``, logged by row id and skipped; this never raises for a
    bad row or an unusable DEK."""
    rows = await _fetch(
        conn,
        "SELECT id, knowledge_type, encrypted_data, iv, auth_tag, confidence, source_message_id, "
        "source_conversation_id, created_at, expires_at, version FROM user_knowledge "
        "WHERE user_id = %s AND is_active AND (expires_at IS NULL OR expires_at > now()) "
        "ORDER BY created_at, id",
        (user_id,),
    )
    result = KnowledgeLoad()
    if not rows:
        return result
    try:
        dek = await user_dek(conn, user_id, ring, create=False)
    except (UnknownKeyVersionError, DekUnwrapError) as exc:
        dek = None
        result.dek_error = str(exc)
    if dek is None:
        result.dek_error = result.dek_error or f"user {user_id} has knowledge rows but no user_keys row"
        result.decrypt_errors = len(rows)
        log.error("user knowledge not readable: %s (%d rows)", result.dek_error, len(rows))
        return result
    for row_id, ktype, data, iv, tag, confidence, msg_id, conv_id, created_at, expires_at, version in rows:
        started = time.perf_counter()
        try:
            plain = decrypt_fact(
                dek, user_id, ktype, row_id, EncryptedFact(bytes(data), bytes(iv), bytes(tag))
            )
            payload = json.loads(plain)
            if not isinstance(payload, dict):
                raise DecryptError(f"user_knowledge row {row_id}: payload is not a JSON object")
        except (DecryptError, ValueError) as exc:
            result.decrypt_errors += 1
            log.warning(
                "user_knowledge row %s skipped: %s",
                row_id,
                exc.__class__.__name__,
                extra={"knowledge_row_id": str(row_id)},
            )
            continue
        result.decrypt_ms.append((time.perf_counter() - started) * 1000)
        result.facts.append(
            Fact(
                id=row_id,
                knowledge_type=ktype,
                data=payload,
                confidence=_confidence(confidence),
                source_message_id=msg_id,
                source_conversation_id=conv_id,
                created_at=created_at,
                expires_at=expires_at,
                version=int(version),
            )
        )
    return result


def _encode(data: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(data), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


async def store_fact(
    conn: AsyncConnection[Any],
    user_id: UUID,
    ring: MasterKeyRing,
    knowledge_type: str,
    data: Mapping[str, Any],
    *,
    confidence: float | None,
    source_message_id: UUID | None,
    source_conversation_id: UUID | None,
    extracted_from: str = "chat_pipeline",
    expires_at: datetime | None = None,
    supersede: bool = False,
    supersede_key: str | None = None,
) -> UUID:
    """Encrypt and insert one fact; its id.

    ``supersede`` (implied by ``supersede_key``): the user's active facts of the same
    ``knowledge_type`` — only those whose ``data[supersede_key]`` equals this one's when a key is
    given (e.g. ``"attribute"`` for one body parameter among several) — become ``is_active =
    false`` and the new row gets ``version`` = their highest version + 1, in one transaction that
    holds the user's ``user_keys`` row (``FOR NO KEY UPDATE``), so two concurrent writers of the
    same user take turns and never leave two active versions. Rows that do not decrypt are left
    alone. ``source_message_id`` is the evidence pointer the forget cascade follows."""
    _check_type(knowledge_type)
    if extracted_from not in EXTRACTED_FROM:
        raise ValueError(
            f"unknown extracted_from {extracted_from!r}; known: {', '.join(sorted(EXTRACTED_FROM))}"
        )
    if confidence is not None and not 0 <= confidence <= 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if supersede_key is not None:
        supersede = True
        if supersede_key not in data:
            raise ValueError(f"supersede_key {supersede_key!r} is not a field of the fact's data")
    dek = await user_dek(conn, user_id, ring, create=True)
    assert dek is not None  # create=True always yields a key
    row_id = uuid4()
    sealed = encrypt_fact(dek, user_id, knowledge_type, row_id, _encode(data))
    async with conn.transaction():
        version = 1
        if supersede:
            await conn.execute("SELECT 1 FROM user_keys WHERE user_id = %s FOR NO KEY UPDATE", (user_id,))
            older = await _fetch(
                conn,
                "SELECT id, encrypted_data, iv, auth_tag, version FROM user_knowledge "
                "WHERE user_id = %s AND knowledge_type = %s AND is_active",
                (user_id, knowledge_type),
            )
            replaced: list[UUID] = []
            for old_id, old_data, old_iv, old_tag, old_version in older:
                if supersede_key is not None:
                    try:
                        old = json.loads(
                            decrypt_fact(
                                dek,
                                user_id,
                                knowledge_type,
                                old_id,
                                EncryptedFact(bytes(old_data), bytes(old_iv), bytes(old_tag)),
                            )
                        )
                    except (DecryptError, ValueError):
                        log.warning(
                            "user_knowledge row %s not considered for supersede: does not decrypt", old_id
                        )
                        continue
                    if not isinstance(old, dict) or old.get(supersede_key) != data[supersede_key]:
                        continue
                replaced.append(old_id)
                version = max(version, int(old_version) + 1)
            if replaced:
                await conn.execute(
                    "UPDATE user_knowledge SET is_active = FALSE WHERE id = ANY(%s)", (replaced,)
                )
        await conn.execute(
            "INSERT INTO user_knowledge (id, user_id, encrypted_data, iv, auth_tag, knowledge_type, version, "
            "extracted_from, source_conversation_id, source_message_id, confidence, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                row_id,
                user_id,
                sealed.encrypted_data,
                sealed.iv,
                sealed.auth_tag,
                knowledge_type,
                version,
                extracted_from,
                source_conversation_id,
                source_message_id,
                confidence,
                expires_at,
            ),
        )
    return row_id
