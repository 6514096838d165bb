"""Client-side verify-and-replay (spec 02 §"Client-Side Verify-and-Replay"): after a shard failover the
last acknowledged pairs may be missing on the new primary (asynchronous replication loses the last
seconds of WAL); the app keeps its last pairs and sends them again.

    verify_and_replay(runtime, {"user_id": ..., "conversation_id": ...,
                                "pairs": [{"user_message": {id, text, created_at, input_type},
                                           "assistant_message": {id, text, created_at,
                                                                 voice_params?, artifact?}}],
                                "recent_confirmed_ids": [...]})
      -> {"present_ids": [...], "inserted_ids": [...], "missing_confirmed_ids": [...],
          "deleted_ids": [...], "conversation_id": "..."}

In one shard transaction: the user's conversation (created with the client's id when the shard has
none; another user's conversation → :class:`ConversationNotOwnedError`), which of the request's ids
the shard already has, then every missing message inserted with the client's id and time
(``INSERT … ON CONFLICT DO NOTHING``, so a repeated or concurrent replay writes nothing twice). An
assistant message that carries an artefact (``artifact: {kind: stylist|recognition, result}``) gets
its template-built ``response_description`` (:mod:`llm_orchestrator.response_description`), as the
live turn would have stored. A message the user deleted (its tombstone in production
``deleted_messages_registry``) is never brought back (``deleted_ids``). Each replayed user message is
queued for enrichment (priority ``backfill``) after the commit.

``present_ids``: ids of the request the shard had before this call; ``inserted_ids``: written now;
``missing_confirmed_ids``: ``recent_confirmed_ids`` the shard has neither had nor got from this
request (the app replays them from its buffer on the next call).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from llm_orchestrator import memory, response_description, store
from llm_orchestrator.account import ConversationNotOwnedError
from llm_orchestrator.dialogue import TurnRejectedError, raise_if_shard_down

__all__ = [
    "ConversationNotOwnedError",
    "ReplayRejectedError",
    "ReplayRequest",
    "ReplayUnavailableError",
    "verify_and_replay",
]

log = logging.getLogger(__name__)

#: the most pairs / confirmed ids one call takes (the app's buffer holds 10 pairs + 60 s of confirmed)
MAX_PAIRS = 50
MAX_CONFIRMED = 50
#: an assistant reply longer than this is refused (the LLM's answers are far shorter)
MAX_ASSISTANT_CHARS = 20_000
#: model_used of a reply stored from the client's copy
REPLAY_MODEL = "client_replay"


class ReplayRejectedError(TurnRejectedError):
    """The replay's input is invalid (named in the message); retrying cannot help."""


class ReplayUnavailableError(RuntimeError):
    """The tombstone registry (production) did not answer: nothing was written; retry later."""


class ReplayUserMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: UUID
    text: str = Field(min_length=1, max_length=100_000)
    created_at: AwareDatetime
    input_type: Literal["text", "voice"] = "text"


class ReplayArtifact(BaseModel):
    """What the answer showed: the stylist's items or the recognition result (as the app got them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["stylist", "recognition"]
    result: dict[str, Any] | list[Any]


class ReplayAssistantMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: UUID
    text: str = Field(min_length=1, max_length=MAX_ASSISTANT_CHARS)
    created_at: AwareDatetime
    #: accepted for the app's convenience (the pair as it holds it); not stored
    voice_params: dict[str, Any] | None = None
    artifact: ReplayArtifact | None = None


class ReplayPair(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_message: ReplayUserMessage
    assistant_message: ReplayAssistantMessage


class ReplayRequest(BaseModel):
    """The arguments of ``verify_and_replay``, validated (a bad one is named in the error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UUID
    conversation_id: UUID
    pairs: list[ReplayPair] = Field(default_factory=list, max_length=MAX_PAIRS)
    recent_confirmed_ids: list[UUID] = Field(default_factory=list, max_length=MAX_CONFIRMED)

    @model_validator(mode="after")
    def _distinct_ids(self) -> ReplayRequest:
        seen: set[UUID] = set()
        for n, pair in enumerate(self.pairs):
            messages = (("user_message", pair.user_message), ("assistant_message", pair.assistant_message))
            for role, msg in messages:
                if msg.id in seen:
                    raise ValueError(f"pairs[{n}].{role}.id {msg.id} appears twice in the request")
                seen.add(msg.id)
        return self

    def message_ids(self) -> list[UUID]:
        return [m.id for p in self.pairs for m in (p.user_message, p.assistant_message)]


def _at(value: dt.datetime, now: dt.datetime) -> dt.datetime:
    """The client's time, never in the future (a fast clock would put the pair after newer turns)."""
    return min(value, now)


async def _tombstoned(rt: Any, user_id: UUID, conversation_id: UUID, ids: list[UUID]) -> set[UUID]:
    """Which of ``ids`` the user deleted (hard delete or erase): their tombstones in production."""
    if not ids:
        return set()
    try:
        async with rt.production.connection() as conn:
            cur = await conn.execute(
                "SELECT message_id FROM deleted_messages_registry"
                " WHERE (conversation_id = %s AND message_id = ANY(%s))"
                " OR (user_id = %s AND message_id = ANY(%s))",
                (conversation_id, ids, user_id, ids),
            )
            return {row[0] for row in await cur.fetchall()}
    except Exception as exc:
        log.warning(
            "tombstone registry unreadable: replay refused for now",
            extra={"user_id": str(user_id), "error": type(exc).__name__, "detail": str(exc)[:200]},
        )
        raise ReplayUnavailableError(f"tombstone registry unavailable: {type(exc).__name__}") from exc


async def verify_and_replay(rt: Any, raw: ReplayRequest | dict[str, Any]) -> dict[str, Any]:
    """See the module docstring."""
    try:
        req = raw if isinstance(raw, ReplayRequest) else ReplayRequest.model_validate(raw)
    except ValueError as exc:
        rt.metrics.replay_requests.labels("rejected").inc()
        raise ReplayRejectedError(str(exc)) from None
    s = rt.settings
    user_id = req.user_id
    now = dt.datetime.now(dt.UTC)
    asked = req.message_ids()
    every = list(dict.fromkeys([*asked, *req.recent_confirmed_ids]))
    inserted: list[UUID] = []
    pairs_inserted = 0
    replayed_users: list[UUID] = []
    try:
        pool = await rt.router.pool_for_user(user_id)
        async with pool.connection() as conn, conn.transaction():
            conversation_id, _ = await store.conversation_for(conn, user_id, req.conversation_id)
            cur = await conn.execute(
                "SELECT id FROM messages WHERE conversation_id = %s AND id = ANY(%s)",
                (conversation_id, every),
            )
            present = {row[0] for row in await cur.fetchall()}
            deleted = await _tombstoned(rt, user_id, conversation_id, [i for i in every if i not in present])
            pairs = sorted(req.pairs, key=lambda p: p.user_message.created_at)
            for pair in pairs:
                user_msg, reply = pair.user_message, pair.assistant_message
                wrote = False
                user_at = _at(user_msg.created_at, now)
                if user_msg.id not in present and user_msg.id not in deleted:
                    text = memory.normalize_message(user_msg.text, s.max_message_chars)
                    if text and await store.insert_message(
                        conn,
                        conversation_id=conversation_id,
                        message_id=user_msg.id,
                        role="user",
                        content=text,
                        input_type=user_msg.input_type,
                        created_at=user_at,
                    ):
                        inserted.append(user_msg.id)
                        replayed_users.append(user_msg.id)
                        wrote = True
                if reply.id not in present and reply.id not in deleted:
                    artifact = reply.artifact
                    description = (
                        response_description.build_response_description(artifact.kind, artifact.result)
                        if artifact is not None
                        else None
                    )
                    # the reply follows its message even when the client's clocks disagree
                    reply_at = max(_at(reply.created_at, now), user_at + dt.timedelta(microseconds=1))
                    if await store.insert_message(
                        conn,
                        conversation_id=conversation_id,
                        message_id=reply.id,
                        role="assistant",
                        content=memory.normalize_message(reply.text, MAX_ASSISTANT_CHARS),
                        model_used=REPLAY_MODEL,
                        response_description=description,
                        turn_status="ok",
                        enrichment_status="skipped",
                        created_at=reply_at,
                    ):
                        inserted.append(reply.id)
                        wrote = True
                pairs_inserted += int(wrote)
    except store.ConversationMismatchError as exc:
        rt.metrics.replay_requests.labels("rejected").inc()
        raise ConversationNotOwnedError(str(exc)) from None
    except ReplayUnavailableError:
        rt.metrics.replay_requests.labels("unavailable").inc()
        raise
    except Exception as exc:
        raise_if_shard_down(rt, user_id, exc)
        raise
    queued = await asyncio.gather(
        *(rt.enqueue_enrichment(conversation_id, m, user_id, priority="backfill") for m in replayed_users),
        return_exceptions=True,
    )
    for message_id, outcome in zip(replayed_users, queued, strict=True):
        if isinstance(outcome, BaseException):
            # the TTL recovery takes pending messages after an hour
            log.warning(
                "replayed message not queued for enrichment",
                extra={"message_id": str(message_id), "error": type(outcome).__name__},
            )
    rt.metrics.replay_requests.labels("ok").inc()
    rt.metrics.replay_pairs_inserted.inc(pairs_inserted)
    rt.metrics.replay_messages_inserted.inc(len(inserted))
    inserted_set = set(inserted)
    result = {
        "conversation_id": str(conversation_id),
        "present_ids": [str(i) for i in every if i in present],
        "inserted_ids": [str(i) for i in inserted],
        "missing_confirmed_ids": [
            str(i)
            for i in dict.fromkeys(req.recent_confirmed_ids)
            if i not in present and i not in inserted_set and i not in deleted
        ],
        "deleted_ids": [str(i) for i in every if i in deleted],
    }
    log.info(
        "replay",
        extra={
            "user_id": str(user_id),
            "conversation_id": str(conversation_id),
            "pairs": len(req.pairs),
            "present": len(result["present_ids"]),
            "inserted": len(inserted),
            "missing_confirmed": len(result["missing_confirmed_ids"]),
            "deleted": len(result["deleted_ids"]),
        },
    )
    return result
