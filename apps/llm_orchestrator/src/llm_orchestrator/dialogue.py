"""One dialogue turn: the user's message → ContextPack → LLM answer (spec 02 §13, "Celery Task").

    runtime = await Runtime.build(settings, metrics)
    result = await run_turn(runtime, TurnInput(user_id=..., message=..., user_message_id=...,
                                               assistant_message_id=..., conversation_id=...))

Order of a turn (one deadline, ``DIALOGUE_SOFT_TIME_LIMIT_S`` minus ``DIALOGUE_STORE_MARGIN_S``):

1. the user's shard (routing cache → current primary), the user's conversation (created for an
   unknown user) and the **user message stored first** (``ON CONFLICT DO NOTHING`` with the
   client's ``user_message_id``), with its reply_to resolution, in one transaction;
2. in parallel: mood ``/analyze`` (≤ ``MOOD_TIMEOUT_S``), the query embedding (Cohere
   ``search_query``), and on the shard the decrypted user knowledge, the last 10 messages, the memory
   flags of the last 10 replies; the context agent's ``/context`` starts as soon as the knowledge
   is decrypted (it needs the ``compact_preferences``), ≤ ``CONTEXT_TIMEOUT_S``;
3. hybrid search (after the embedding), the diversity filter, the emotional filter (after the mood
   frame), the density cap; catalog context (fashion intents); persona ``/persona`` with both frames;
4. ContextPack → prompt (token budgets per block) → LLM router (one deadline for the chain);
   stylist (Intelistyle) and recognition results when the intent asks for them;
5. the assistant reply stored (``assistant_message_id``, ``ON CONFLICT DO NOTHING``) with its
   mood frame, model, duration, memory_refs and turn_status; enrichment of the user message queued;
   persona ``/feedback`` + ``/flush`` for the exchange sent after the answer (not awaited by it).

Faults: an agent, the embedding, the catalog, Intelistyle or recognition failing makes the answer
``degraded`` (listed in the result), never a failed turn; every LLM provider failing gives the
graceful template answer, stored with ``turn_status = 'failed'``; the shard failing raises
:class:`ShardUnavailableError` (retryable, nothing half-written: the user message's transaction
either committed — and a retry finds it — or did not).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm_orchestrator import (
    extraction,
    intents,
    memory,
    prompt,
    reply_to,
    response_description,
    signals,
    store,
)
from llm_orchestrator.agents import DEFAULT_VOICE_PARAMS, AgentCall
from llm_orchestrator.knowledge import KnowledgeLoad, load_knowledge
from llm_orchestrator.models import ContextPack, Episode, MoodFrame, RecentMessage, ReferencedArtifact
from llm_orchestrator.providers.base import ChatMessage, LLMRequest
from llm_orchestrator.providers.router import AllProvidersFailed
from llm_orchestrator.stream import SentenceStream
from llm_orchestrator.text_rules import language_of

__all__ = ["ShardUnavailableError", "TurnInput", "TurnRejectedError", "raise_if_shard_down", "run_turn"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: what the user hears when every LLM provider failed (the turn is stored as failed)
GRACEFUL_ANSWERS = {
    "ru": "Прости, я на секунду потеряла мысль. Повтори, пожалуйста, чуть позже?",
    "en": "Sorry, I lost my train of thought for a moment. Could you say that again in a little while?",
}


class TurnRejectedError(ValueError):
    """The turn's input is invalid (named in the message); retrying cannot help."""


class ShardUnavailableError(RuntimeError):
    """The user's shard did not answer; the task is retried (nothing half-written)."""


class TurnInput(BaseModel):
    """The arguments of ``generate_response``, validated (a bad one is named in the error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: UUID
    message: str
    input_type: str = Field(default="text", pattern=r"^(text|voice)$")
    conversation_id: UUID | None = None
    user_message_id: UUID
    assistant_message_id: UUID
    explicit_reply_to: UUID | None = None
    #: the client's position for the context agent: {"lat", "lng", "mall_id"?, "floor"?}
    location: dict[str, Any] | None = None
    #: a photo attached to the message (recognition intents)
    photo_url: str | None = Field(default=None, max_length=2048)
    #: prosody etc. are not passed on yet; the mood agent reads the text

    @field_validator("assistant_message_id")
    @classmethod
    def _distinct(cls, value: UUID, info: Any) -> UUID:
        if value == info.data.get("user_message_id"):
            raise ValueError("assistant_message_id must differ from user_message_id")
        return value


@dataclass(slots=True)
class _Turn:
    """What one turn gathered, for the result, the log and the metrics."""

    started: float
    deadline: float
    degraded: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def mark(self, name: str, since: float) -> None:
        self.timings[name] = round((time.perf_counter() - since) * 1000, 2)


def raise_if_shard_down(rt: Any, user_id: UUID, exc: Exception) -> None:
    """A connection-level failure of the shard → :class:`ShardUnavailableError` (retryable; the
    router re-reads the routing entry first); any other error is left to the caller."""
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.AdminShutdown | PoolTimeout | OSError):
        rt.router.invalidate()
        rt.metrics.errors.labels("shard_unavailable").inc()
        raise ShardUnavailableError(f"shard of user {user_id} unavailable: {type(exc).__name__}") from exc


async def _guarded(
    turn: _Turn, part: str, coro: Awaitable[T], default: T, budget_s: float | None = None
) -> T:
    """``coro``'s value, or ``default`` (and ``part`` marked degraded) when it fails or overruns."""
    since = time.perf_counter()
    try:
        if budget_s is None:
            return await coro
        return await asyncio.wait_for(coro, timeout=max(0.001, budget_s))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning(
            "turn part degraded", extra={"part": part, "error": type(exc).__name__, "detail": str(exc)[:200]}
        )
        turn.degraded.append(part)
        return default
    finally:
        turn.mark(part, since)


def _episodes(rows: list[dict[str, Any]]) -> list[Episode]:
    out = []
    for row in rows:
        try:
            out.append(Episode.model_validate(row))
        except ValueError:
            log.warning("episode row skipped", extra={"message_id": str(row.get("id"))})
    return out


def _recent(rows: list[store.MessageRow]) -> list[RecentMessage]:
    return [
        RecentMessage(
            id=r.id,
            role=r.role,  # type: ignore[arg-type]
            content=r.content,
            created_at=r.created_at,
            response_description=r.response_description,
        )
        for r in rows
    ]


async def run_turn(rt: Any, raw: TurnInput | dict[str, Any]) -> dict[str, Any]:
    """The whole turn; returns ``TurnResult`` as a JSON-able dict."""
    s = rt.settings
    started = time.monotonic()
    perf0 = time.perf_counter()
    try:
        inp = raw if isinstance(raw, TurnInput) else TurnInput.model_validate(raw)
        message = memory.normalize_message(inp.message, s.max_message_chars)
    except ValueError as exc:
        rt.metrics.errors.labels("rejected").inc()
        raise TurnRejectedError(str(exc)) from None
    turn = _Turn(started, started + s.dialogue_soft_time_limit_s - s.dialogue_store_margin_s)
    user_id = inp.user_id
    intent = intents.classify_intent(message, has_photo=inp.photo_url is not None, photo_url=inp.photo_url)
    now = dt.datetime.now(dt.UTC)

    # 1. shard, conversation, the user message first
    try:
        pool = await rt.router.pool_for_user(user_id)
        async with pool.connection() as conn, conn.transaction():
            conversation_id, _ = await store.conversation_for(conn, user_id, inp.conversation_id)
            artifacts = await store.recent_artifacts(
                conn, conversation_id, now - dt.timedelta(seconds=s.reply_to_window_s)
            )
            known: tuple[UUID, ...] = ()
            if inp.explicit_reply_to is not None and await store.artifact(
                conn, conversation_id, inp.explicit_reply_to
            ):
                known = (inp.explicit_reply_to,)  # an explicit reply_to may be older than the window
            reply_id = reply_to.resolve_reply_to(
                inp.explicit_reply_to,
                artifacts,
                now,
                window_s=s.reply_to_window_s,
                ambiguity_s=s.reply_to_ambiguity_s,
                known_artifacts=known,
            )
            await store.insert_message(
                conn,
                conversation_id=conversation_id,
                message_id=inp.user_message_id,
                role="user",
                content=message,
                input_type=inp.input_type,
                reply_to_id=reply_id,
                media_urls=[inp.photo_url] if inp.photo_url else None,
            )
            stored_at = await store.created_at(conn, conversation_id, inp.user_message_id)
    except store.ConversationMismatchError as exc:
        rt.metrics.errors.labels("rejected").inc()
        raise TurnRejectedError(str(exc)) from None
    except Exception as exc:
        raise_if_shard_down(rt, user_id, exc)
        raise

    pack_started = time.perf_counter()
    try:
        pack, ctx = await _assemble(
            rt, turn, inp, message, intent, conversation_id, reply_id, pool, stored_at
        )
    except Exception as exc:
        raise_if_shard_down(rt, user_id, exc)
        raise
    pack_ms = (time.perf_counter() - pack_started) * 1000
    rt.metrics.context_pack_time_ms.observe(pack_ms)

    # 4. LLM
    rendered = prompt.render(pack, intent, message, s)
    for block, tokens in rendered.block_tokens.items():
        rt.metrics.block_tokens.labels(block).observe(tokens)
    request = LLMRequest(
        system=rendered.system,
        messages=[ChatMessage(role=cast(Any, m["role"]), content=m["content"]) for m in rendered.messages],
        max_tokens=s.llm_max_output_tokens,
    )
    llm_started = time.perf_counter()
    stream = SentenceStream(
        rt.redis,
        inp.assistant_message_id,
        rt.metrics,
        publish_timeout_s=s.stream_publish_timeout_s,
        enabled=s.stream_sentences,
    )
    try:
        return await _answer_and_store(
            rt, turn, inp, message, intent, conversation_id, reply_id, pool, pack, ctx, rendered,
            request, stream, started, perf0, pack_ms, llm_started,
        )  # fmt: skip
    except BaseException:
        await stream.abort()
        raise


async def _answer_and_store(
    rt: Any,
    turn: _Turn,
    inp: TurnInput,
    message: str,
    intent: Any,
    conversation_id: UUID,
    reply_id: UUID | None,
    pool: Any,
    pack: ContextPack,
    ctx: _Gathered,
    rendered: Any,
    request: LLMRequest,
    stream: SentenceStream,
    started: float,
    perf0: float,
    pack_ms: float,
    llm_started: float,
) -> dict[str, Any]:
    """Phases 4 (the LLM, streamed sentence by sentence) and 5 (the reply stored) of the turn."""
    user_id = inp.user_id
    failed = False
    model_used: str | None
    try:
        result = await rt.llm.complete(request, deadline=turn.deadline, sink=stream)
        text = result.result.text
        model_used = result.result.model
        rt.metrics.cost_usd.labels(result.result.provider, result.result.model).inc(result.result.cost_usd)
        rt.metrics.tokens.labels(result.result.provider, "input").inc(result.result.input_tokens)
        rt.metrics.tokens.labels(result.result.provider, "output").inc(result.result.output_tokens)
        attempts = result.attempts
    except AllProvidersFailed as exc:
        failed = True
        text = GRACEFUL_ANSWERS[language_of(message)]
        model_used = "none:graceful_answer"
        attempts = exc.attempts
        stream.answer(text)
        log.error("every LLM provider failed", extra={"user_id": str(user_id), "attempts": len(exc.attempts)})
    stream.finish()
    for attempt in attempts:
        rt.metrics.provider_calls.labels(attempt.provider, attempt.outcome).inc()
        if attempt.outcome != "ok":
            rt.metrics.provider_fallbacks.labels(attempt.provider, attempt.outcome).inc()
    turn.mark("llm", llm_started)

    # 5. store the reply
    duration_ms = int((time.monotonic() - started) * 1000)
    status = "failed" if failed else ("degraded" if turn.degraded else "ok")
    description = None
    if pack.stylist_result:
        description = response_description.for_stylist(pack.stylist_result)
    elif pack.recognition_result:
        description = response_description.for_recognition(pack.recognition_result)
    try:
        async with pool.connection() as conn, conn.transaction():
            await store.insert_message(
                conn,
                conversation_id=conversation_id,
                message_id=inp.assistant_message_id,
                role="assistant",
                content=text,
                model_used=model_used,
                duration_ms=duration_ms,
                response_description=description,
                memory_refs=len(pack.episodes),
                turn_status=status,
                enrichment_status="skipped",
            )
            await conn.execute(
                "UPDATE messages SET mood_frame = %s WHERE conversation_id = %s AND id = %s"
                " AND mood_frame IS NULL",
                (Jsonb(ctx.mood.value or {}), conversation_id, inp.user_message_id),
            )
    except Exception as exc:
        raise_if_shard_down(rt, user_id, exc)
        raise
    await stream.end()

    exchange_id = str(inp.assistant_message_id)
    persona_out = ctx.persona.value or {}
    had_memory = bool(pack.episodes)
    rt.metrics.memory_replies.labels(str(had_memory).lower()).inc()
    follow_ups = [
        rt.enqueue_enrichment(conversation_id, inp.user_message_id, user_id),
        rt.remember_meta(user_id, signals.response_meta(text, intent, had_memory)),
    ]
    previous = next((m for m in reversed(pack.recent_messages) if m.role == "assistant"), None)
    if previous is not None:
        # the user's message is the reaction to the previous answer: its signals belong to that
        # exchange, which is flushed now (once: persona answers a repeated flush as a replay)
        found = signals.detect_behavioral_signals(
            message, previous.content, pack.mood_frame, ctx.previous_meta
        )
        follow_ups.append(
            rt.agents.feedback_and_flush(
                user_id,
                str(previous.id),
                [
                    {
                        "signal_id": str(uuid.uuid5(previous.id, f"{kind}:{inp.user_message_id}")),
                        "signal_type": kind,
                        "signal_data": data,
                    }
                    for kind, data in found
                ],
            )
        )
    follow_ups.append(rt.observe_queues())
    rt.after_turn(*follow_ups)
    rt.metrics.turns.labels(status).inc()
    for part in turn.degraded:
        rt.metrics.degraded.labels(part).inc()
    rt.metrics.response_time_ms.labels(status).observe(duration_ms)
    log.info(
        "turn answered",
        extra={
            "user_id": str(user_id),
            "conversation_id": str(conversation_id),
            "status": status,
            "intent": intent.type,
            "model_used": model_used,
            "duration_ms": duration_ms,
            "context_pack_ms": round(pack_ms, 2),
            "block_tokens": rendered.block_tokens,
            "episodes": len(pack.episodes),
            "degraded": turn.degraded,
            "timings_ms": turn.timings,
            "total_ms": round((time.perf_counter() - perf0) * 1000, 2),
        },
    )
    return {
        "text": text,
        "voice_params": persona_out.get("voice_params") or DEFAULT_VOICE_PARAMS,
        "avatar_state": persona_out.get("avatar_state"),
        "render_hints": persona_out.get("render_hints"),
        "intent": intent.type,
        "duration_ms": duration_ms,
        "model_used": model_used,
        "user_message_id": str(inp.user_message_id),
        "assistant_message_id": str(inp.assistant_message_id),
        "conversation_id": str(conversation_id),
        "exchange_id": exchange_id,
        "reply_to_id": str(reply_id) if reply_id else None,
        "degraded": turn.degraded,
        "failed": failed,
        #: where the time went (ms): context_pack (agents, embedding, shard, filters), llm, the parts
        "timings_ms": {"context_pack": round(pack_ms, 2), **turn.timings},
        "episodes": len(pack.episodes),
        "block_tokens": rendered.block_tokens,
    }


@dataclass(slots=True)
class _Gathered:
    mood: AgentCall
    context: AgentCall
    persona: AgentCall
    previous_meta: list[dict[str, Any]]


async def _assemble(
    rt: Any,
    turn: _Turn,
    inp: TurnInput,
    message: str,
    intent: Any,
    conversation_id: UUID,
    reply_id: UUID | None,
    pool: Any,
    stored_at: dt.datetime | None,
) -> tuple[ContextPack, _Gathered]:
    """Phases 2 and 3 of the turn: everything the ContextPack holds."""
    s = rt.settings
    user_id = inp.user_id

    async def shard_reads() -> tuple[
        KnowledgeLoad, list[store.MessageRow], list[bool], dict[str, Any] | None
    ]:
        since = time.perf_counter()
        async with pool.connection() as conn:
            knowledge = await load_knowledge(conn, user_id, rt.keyring.ring())
            recent = await store.recent_messages(
                conn,
                conversation_id,
                s.recent_messages_limit,
                exclude=(inp.user_message_id,),
                before=stored_at,
            )
            flags = await store.memory_flags(conn, conversation_id, s.memory_density_window)
            art = await store.artifact(conn, conversation_id, reply_id) if reply_id else None
        turn.mark("shard_reads", since)
        return knowledge, recent, flags, art

    async def embed() -> list[float] | None:
        vectors: list[list[float]] = await rt.embedder.embed([message], s.embedding_input_type_query)
        return vectors[0]

    mood_task = asyncio.create_task(rt.agents.mood_frame(user_id, message, inp.input_type))
    meta_task = asyncio.create_task(rt.recent_meta(user_id))
    embed_task = asyncio.create_task(_guarded(turn, "embedding", embed(), None, s.embedding_timeout))
    knowledge, recent_rows, flags, art = await shard_reads()
    for ms in knowledge.decrypt_ms:
        rt.metrics.decrypt_latency_ms.observe(ms)
    rt.metrics.decrypts.inc(len(knowledge.decrypt_ms) + knowledge.decrypt_errors)
    if knowledge.decrypt_errors:
        rt.metrics.decrypt_errors.inc(knowledge.decrypt_errors)
        turn.degraded.append("user_knowledge")
    profile = extraction.compact_profile(knowledge.facts, tz=ZoneInfo(s.diversity_timezone))
    context_task = asyncio.create_task(
        rt.agents.context_frame(user_id, inp.location, profile.compact_preferences)
    )

    async def search() -> list[Episode]:
        embedding = await embed_task
        since = time.perf_counter()
        async with pool.connection() as conn:
            rows = await store.hybrid_search(
                conn,
                conversation_id,
                embedding,
                message,
                threshold=s.similarity_threshold,
                top_k=s.retrieval_top_k,
            )
        turn.mark("hybrid_search", since)
        return _episodes(rows)

    async def catalog() -> list[dict[str, Any]]:
        if intent.type != "fashion" or not s.catalog_products:
            return []
        brands = profile.favorite_brands
        async with rt.production.connection() as conn:
            return await store.catalog_context(conn, brands, s.catalog_products)

    search_task = asyncio.create_task(search())
    catalog_task = asyncio.create_task(_guarded(turn, "catalog", catalog(), [], s.catalog_timeout_s))
    mood, context = await asyncio.gather(mood_task, context_task)
    turn.timings["mood_agent"] = round(mood.ms, 2)
    turn.timings["context_agent"] = round(context.ms, 2)
    for part, call in (("mood_frame", mood), ("context_frame", context)):
        if call.source != "agent" and call.reason != "no_location":
            turn.degraded.append(part)
    mood_frame = MoodFrame.model_validate(mood.value) if mood.value else MoodFrame()
    recent = _recent(recent_rows)
    previous_meta = await meta_task
    persona_body = {
        "user_id": str(user_id),
        "mood_frame": mood.value,
        "context_frame": context.value,
        "user_intent": intent.persona_intent,
        "user_knowledge_compact": profile.user_knowledge_compact,
        "last_n_response_meta": previous_meta[-20:],
        "exchange_id": str(inp.assistant_message_id),
    }
    persona_task = asyncio.create_task(rt.agents.persona_output(persona_body))

    episodes = await search_task
    episodes = memory.diversity_filter(
        episodes, per_day=s.diversity_per_day, tz=ZoneInfo(s.diversity_timezone)
    )
    episodes, excluded = memory.emotional_filter(
        episodes,
        mood_frame,
        valence_max=s.emotional_filter_valence_max,
        frustration_min=s.emotional_filter_frustration_min,
    )
    episodes, _ = memory.density_cap(
        episodes,
        flags,
        max_per_response=s.max_episodes_per_response,
        max_density=s.max_memory_density_rolling_10,
        window=s.memory_density_window,
    )
    catalog_rows = await catalog_task
    persona = await persona_task
    turn.timings["persona_agent"] = round(persona.ms, 2)
    if persona.source != "agent":
        turn.degraded.append("persona")
    stylist: dict[str, Any] | None = None
    recognition: dict[str, Any] | None = None
    if intent.requires_stylist:
        stylist = await _guarded(
            turn,
            "stylist",
            rt.stylist(message, profile, catalog_rows),
            None,
            min(s.intelistyle_timeout_s, turn.left()),
        )
    if intent.requires_recognition and intent.photo_url:
        recognition = await _guarded(
            turn,
            "recognition",
            rt.recognize(intent.photo_url, user_id),
            None,
            min(s.recognition_timeout_s, max(0.0, turn.left() - s.llm_min_attempt_s)),
        )
    directive = (persona.value or {}).get("persona_directive")
    pack = ContextPack(
        user_knowledge=profile.lines,
        episodes=episodes,
        recent_messages=recent,
        mood_frame=mood_frame if mood.value else None,
        context_frame=context.value,
        referenced_artifact=ReferencedArtifact.model_validate(art) if art else None,
        persona_directive=prompt.directive_text(directive),
        catalog=catalog_rows,
        stylist_result=stylist,
        recognition_result=recognition,
        user_display_name=profile.name,
    )
    log.debug("emotional filter", extra={"excluded": len(excluded)})
    return pack, _Gathered(mood, context, persona, previous_meta)


def new_ids() -> dict[str, str]:
    """Fresh message ids (for callers that have none: tests, the lab, the benchmark)."""
    return {"user_message_id": str(uuid.uuid4()), "assistant_message_id": str(uuid.uuid4())}


Callback = Callable[..., Any]
