"""The user's own requests about their data, as dialogue-queue tasks the gateway calls with the user id
from the access token: "forget this" (one message, or every message about a topic), hard delete of
one message, the erase of the whole account, and the profile the avatar holds.

    forget(rt, {"user_id": ..., "mode": "soft", "message_id": ...})          # "Забудь это"
    forget(rt, {"user_id": ..., "mode": "soft", "topic": "Amira"})           # every message about it
    forget(rt, {"user_id": ..., "mode": "hard", "message_id": ...})          # content gone, tombstone
    erase_account(rt, {"user_id": ...})                                       # GDPR erase
    profile(rt, {"user_id": ...})                                             # decrypted knowledge

Each wraps :mod:`llm_orchestrator.forget` / :mod:`llm_orchestrator.knowledge` on the user's shard
(its current primary, through the shard router) and production. A message is looked up in the
user's own conversation only, so another user's message id is simply not found
(:class:`MessageNotFoundError`); a ``conversation_id`` that is not the user's is refused
(:class:`ConversationNotOwnedError`). Invalid input raises :class:`AccountRejectedError` naming the
field. The shard down → :class:`~llm_orchestrator.dialogue.ShardUnavailableError` (retried).

``erase_account`` removes what the orchestrator's own credentials reach: the messages (tombstoned
first), conversation, facts, the DEK (crypto-shred), persona rows, ``routing_table`` and
``recognition_requests`` rows and its own Redis keys (``orch:meta:<user>``,
``orch:frame:<kind>:<user>``). The user's photos (``unde-user-media/<user_id>/``) are the gateway's
to delete, and the other agents' Redis keys expire or are removed by the admin ``erase-user`` run of
the runbook: the result lists them in ``not_erased``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_orchestrator import extraction
from llm_orchestrator import forget as forgetting
from llm_orchestrator.dialogue import TurnRejectedError, raise_if_shard_down
from llm_orchestrator.knowledge import load_knowledge

__all__ = [
    "AccountRejectedError",
    "ConversationNotOwnedError",
    "MessageNotFoundError",
    "erase_account",
    "forget",
    "profile",
]

log = logging.getLogger(__name__)

#: the most messages one topic forget touches (the newest first)
TOPIC_LIMIT = 500
#: the orchestrator's own per-user Redis keys (its DB 11)
_OWN_KEYS = ("orch:meta:{}", "orch:frame:mood:{}", "orch:frame:context:{}")
#: what erase_account cannot reach with the orchestrator's credentials
NOT_ERASED = ("user_media", "redis:mood_agent", "redis:persona_agent", "redis:voice", "redis:api_gateway")


class AccountRejectedError(TurnRejectedError):
    """The request is invalid (named in the message); retrying cannot help."""


class ConversationNotOwnedError(AccountRejectedError):
    """The conversation named belongs to another user."""


class MessageNotFoundError(AccountRejectedError):
    """The message is not in the user's conversation."""


class ForgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UUID
    mode: Literal["soft", "hard"] = "soft"
    message_id: UUID | None = None
    #: soft only: every message whose words contain all of the topic's (full text, 'simple')
    topic: str | None = Field(default=None, min_length=2, max_length=200)
    conversation_id: UUID | None = None
    #: soft only: also drop the artefact's response_description ("forget this look")
    forget_artifact: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> ForgetRequest:
        if (self.message_id is None) == (self.topic is None):
            raise ValueError("give exactly one of message_id and topic")
        if self.mode == "hard" and self.message_id is None:
            raise ValueError("message_id: a hard delete names one message")
        if self.topic is not None and not self.topic.strip():
            raise ValueError("topic: must not be blank")
        return self


class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UUID


def _validate(model: type[BaseModel], raw: BaseModel | dict[str, Any], rt: Any, kind: str) -> Any:
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate(raw)
    except ValueError as exc:
        rt.metrics.forget_requests.labels(kind, "rejected").inc()
        raise AccountRejectedError(str(exc)) from None


@asynccontextmanager
async def autocommit(pool: Any) -> AsyncIterator[AsyncConnection[Any]]:
    """A pool connection switched to autocommit for the forget functions, which open their own
    transactions (so a step commits where it says: the tombstone before the shard change)."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            if not conn.closed:
                try:
                    await conn.set_autocommit(False)
                except Exception:  # a broken connection: the pool discards it
                    log.debug("autocommit not restored", exc_info=True)


async def _conversation_of(conn: AsyncConnection[Any], user_id: UUID, named: UUID | None) -> UUID | None:
    cur = await conn.execute("SELECT id FROM conversations WHERE user_id = %s", (user_id,))
    row = await cur.fetchone()
    found: UUID | None = row[0] if row else None
    if named is not None and named != found:
        raise ConversationNotOwnedError(f"conversation_id {named} is not the conversation of user {user_id}")
    return found


async def forget(rt: Any, raw: ForgetRequest | dict[str, Any]) -> dict[str, Any]:
    """Soft forget of a message or a topic, or hard delete of a message (see the module docstring)."""
    req: ForgetRequest = _validate(ForgetRequest, raw, rt, "forget")
    kind = f"{req.mode}_{'message' if req.message_id else 'topic'}"
    user_id = req.user_id
    try:
        pool = await rt.router.pool_for_user(user_id)
        async with autocommit(pool) as conn:
            conversation_id = await _conversation_of(conn, user_id, req.conversation_id)
            if req.message_id is not None:
                if conversation_id is None:
                    raise MessageNotFoundError(f"message_id {req.message_id} not found")
                result = await _forget_message(rt, conn, conversation_id, req)
            else:
                result = await _forget_topic(rt, conn, conversation_id, req)
    except AccountRejectedError:
        rt.metrics.forget_requests.labels(kind, "rejected").inc()
        raise
    except Exception as exc:
        raise_if_shard_down(rt, user_id, exc)
        raise
    rt.metrics.forget_requests.labels(kind, "ok").inc()
    log.info("forget", extra={"user_id": str(user_id), "kind": kind, "changed": result["changed"]})
    return {"mode": req.mode, "conversation_id": str(conversation_id), **result}


async def _forget_message(
    rt: Any, conn: AsyncConnection[Any], conversation_id: UUID, req: ForgetRequest
) -> dict[str, Any]:
    assert req.message_id is not None
    if req.mode == "soft":
        soft = await forgetting.soft_forget(
            conn, conversation_id, req.message_id, forget_artifact=req.forget_artifact
        )
        if not soft.found:
            raise MessageNotFoundError(f"message_id {req.message_id} not found")
        rt.metrics.forget_snippets.inc(soft.snippets_nullified)
        rt.metrics.forget_knowledge.inc(soft.knowledge_deactivated)
        return {"message_ids": [str(req.message_id)], **asdict(soft)}
    async with rt.production.connection() as prod:
        await prod.set_autocommit(True)
        try:
            hard = await forgetting.hard_delete(conn, prod, conversation_id, req.message_id, req.user_id)
        finally:
            await prod.set_autocommit(False)
    if not hard.found:
        raise MessageNotFoundError(f"message_id {req.message_id} not found")
    rt.metrics.forget_snippets.inc(hard.snippets_nullified)
    return {"message_ids": [str(req.message_id)], **asdict(hard)}


async def _forget_topic(
    rt: Any, conn: AsyncConnection[Any], conversation_id: UUID | None, req: ForgetRequest
) -> dict[str, Any]:
    assert req.topic is not None
    ids: list[UUID] = []
    if conversation_id is not None:
        cur = await conn.execute(
            "SELECT id FROM messages WHERE conversation_id = %s AND NOT is_forgotten AND deleted_at IS NULL"
            " AND tsv @@ plainto_tsquery('simple', %s) ORDER BY created_at DESC LIMIT %s",
            (conversation_id, req.topic.strip(), TOPIC_LIMIT),
        )
        ids = [row[0] for row in await cur.fetchall()]
    changed, snippets, facts = False, 0, 0
    for message_id in ids:
        assert conversation_id is not None
        soft = await forgetting.soft_forget(
            conn, conversation_id, message_id, forget_artifact=req.forget_artifact
        )
        changed = changed or soft.changed
        snippets += soft.snippets_nullified
        facts += soft.knowledge_deactivated
    rt.metrics.forget_snippets.inc(snippets)
    rt.metrics.forget_knowledge.inc(facts)
    return {
        "message_ids": [str(i) for i in ids],
        "found": bool(ids),
        "changed": changed,
        "snippets_nullified": snippets,
        "knowledge_deactivated": facts,
    }


async def erase_account(rt: Any, raw: UserRequest | dict[str, Any]) -> dict[str, Any]:
    """The GDPR erase of the user (see the module docstring); a repeat reports zeros."""
    req: UserRequest = _validate(UserRequest, raw, rt, "erase_account")
    user_id = req.user_id
    try:
        pool = await rt.router.pool_for_user(user_id)
        async with autocommit(pool) as shard, rt.production.connection() as prod:
            await prod.set_autocommit(True)
            try:
                report = await forgetting.erase_user([shard], prod, user_id, s3=None)
            finally:
                await prod.set_autocommit(False)
    except Exception as exc:
        raise_if_shard_down(rt, user_id, exc)
        raise
    own = await rt.redis.delete(*(key.format(user_id) for key in _OWN_KEYS))
    report.redis_keys_deleted["llm_orchestrator"] = int(own)
    rt.router.invalidate()  # the user's routing entry is gone
    rt.metrics.forget_requests.labels("erase_account", "ok").inc()
    log.info("account erased", extra={"user_id": str(user_id), "changed": report.changed})
    return {**report.as_dict(), "not_erased": list(NOT_ERASED)}


async def profile(rt: Any, raw: UserRequest | dict[str, Any]) -> dict[str, Any]:
    """What the avatar knows about the user: the active facts decrypted with the key ring, and the
    compact profile the dialogue builds from them (``summary`` = the prompt's lines)."""
    req: UserRequest = _validate(UserRequest, raw, rt, "profile")
    user_id = req.user_id
    try:
        pool = await rt.router.pool_for_user(user_id)
        async with pool.connection() as conn:
            knowledge = await load_knowledge(conn, user_id, rt.keyring.ring())
    except Exception as exc:
        raise_if_shard_down(rt, user_id, exc)
        raise
    rt.metrics.decrypts.inc(len(knowledge.decrypt_ms) + knowledge.decrypt_errors)
    if knowledge.decrypt_errors:
        rt.metrics.decrypt_errors.inc(knowledge.decrypt_errors)
    compact = extraction.compact_profile(knowledge.facts, tz=ZoneInfo(rt.settings.diversity_timezone))
    return {
        "user_id": str(user_id),
        "name": compact.name,
        "profile": compact.user_knowledge_compact,
        "preferences": compact.compact_preferences,
        "summary": compact.lines,
        "facts": [
            {
                "id": str(f.id),
                "knowledge_type": f.knowledge_type,
                "data": f.data,
                "confidence": f.confidence,
                "version": f.version,
                "created_at": _iso(f.created_at),
                "expires_at": _iso(f.expires_at),
                "source_message_id": str(f.source_message_id) if f.source_message_id else None,
            }
            for f in knowledge.facts
        ],
        "unreadable_facts": knowledge.decrypt_errors,
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
