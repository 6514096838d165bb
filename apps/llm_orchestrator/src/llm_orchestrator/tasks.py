"""Celery tasks of llm_orchestrator (names ``llm_orchestrator.<task>``).

    generate_response.delay(user_id, message, "text", None, conversation_id=..., user_message_id=...,
                            assistant_message_id=..., location={"lat": .., "lng": ..})

Each worker process runs its work on one event loop of its own (:mod:`llm_orchestrator.runtime`).
A turn whose shard does not answer raises :class:`~llm_orchestrator.dialogue.ShardUnavailableError`
and is retried (twice, 1 s apart): the user message is either stored or not, never half, and the
client's message ids make the retry write nothing twice. Invalid input raises
:class:`~llm_orchestrator.dialogue.TurnRejectedError` naming the problem (never retried).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from celery import shared_task

from llm_orchestrator import account, enrichment
from llm_orchestrator.dialogue import ShardUnavailableError, run_turn
from llm_orchestrator.replay import ReplayUnavailableError
from llm_orchestrator.replay import verify_and_replay as replay_pairs
from llm_orchestrator.runtime import process_runtime


@shared_task(
    name="llm_orchestrator.generate_response",
    autoretry_for=(ShardUnavailableError,),
    max_retries=2,
    default_retry_delay=1,
    retry_backoff=False,
)
def generate_response(
    user_id: str,
    message: str,
    input_type: str = "text",
    explicit_reply_to: str | None = None,
    **turn: Any,
) -> dict[str, Any]:
    """User message → ContextPack → LLM answer (+ voice params, avatar state, persona feedback).
    ``turn``: conversation_id, user_message_id, assistant_message_id (required), location, photo_url."""
    rt = process_runtime()
    args = {
        "user_id": user_id,
        "message": message,
        "input_type": input_type,
        "explicit_reply_to": explicit_reply_to,
    }
    return rt.run(run_turn(rt, {**args, **turn}))


@shared_task(
    name="llm_orchestrator.verify_and_replay",
    autoretry_for=(ShardUnavailableError, ReplayUnavailableError),
    max_retries=2,
    default_retry_delay=1,
    retry_backoff=False,
)
def verify_and_replay(**request: Any) -> dict[str, Any]:
    """The app's unconfirmed pairs after a failover: which ids the shard has, the missing ones
    inserted (client ids, ON CONFLICT DO NOTHING). ``request``: user_id, conversation_id, pairs,
    recent_confirmed_ids (:class:`llm_orchestrator.replay.ReplayRequest`)."""
    rt = process_runtime()
    return rt.run(replay_pairs(rt, request))


@shared_task(
    name="llm_orchestrator.forget",
    autoretry_for=(ShardUnavailableError,),
    max_retries=2,
    default_retry_delay=1,
    retry_backoff=False,
)
def forget(**request: Any) -> dict[str, Any]:
    """Soft forget of a message or a topic, hard delete of a message. ``request``: user_id, mode
    (soft|hard), message_id or topic, conversation_id?, forget_artifact?"""
    rt = process_runtime()
    return rt.run(account.forget(rt, request))


@shared_task(
    name="llm_orchestrator.erase_account",
    autoretry_for=(ShardUnavailableError,),
    max_retries=2,
    default_retry_delay=1,
    retry_backoff=False,
)
def erase_account(**request: Any) -> dict[str, Any]:
    """GDPR erase of the user's data the orchestrator reaches. ``request``: user_id."""
    rt = process_runtime()
    return rt.run(account.erase_account(rt, request))


@shared_task(
    name="llm_orchestrator.profile",
    autoretry_for=(ShardUnavailableError,),
    max_retries=2,
    default_retry_delay=1,
    retry_backoff=False,
)
def profile(**request: Any) -> dict[str, Any]:
    """The user's profile from their decrypted knowledge. ``request``: user_id."""
    rt = process_runtime()
    return rt.run(account.profile(rt, request))


@shared_task(
    name="llm_orchestrator.enrich_message",
    autoretry_for=(enrichment.EmbeddingFailedError, ShardUnavailableError),
    max_retries=enrichment.MAX_ATTEMPTS - 1,
    default_retry_delay=30,
)
def enrich_message(conversation_id: str, message_id: str, user_id: str, priority: str = "live") -> str:
    """Embedding, memory type, snippet and extracted facts of one stored user message."""
    rt = process_runtime()
    return rt.run(
        enrichment.enrich(rt, UUID(conversation_id), UUID(message_id), UUID(user_id), priority=priority)
    )


@shared_task(name="llm_orchestrator.enrichment_ttl_recovery")
def enrichment_ttl_recovery() -> dict[str, int]:
    """Messages without embedding older than 1 h → enrich again (retry < 3, LIMIT 500 per shard)."""
    rt = process_runtime()

    async def send(conversation_id: UUID, message_id: UUID, user_id: UUID) -> None:
        enrich_message.apply_async(
            args=(str(conversation_id), str(message_id), str(user_id), "recovery"), queue="enrichment"
        )

    return rt.run(enrichment.ttl_recovery(rt, send))


@shared_task(name="llm_orchestrator.life_event_expiry")
def life_event_expiry() -> dict[str, int]:
    """life_event facts past expires_at → inactive, on every shard (daily 03:00)."""
    rt = process_runtime()
    return rt.run(enrichment.life_event_expiry(rt))


@shared_task(name="llm_orchestrator.extraction_review_sample")
def extraction_review_sample() -> dict[str, Any]:
    """1 % random sample of the day's extracted facts → review log (ids only)."""
    rt = process_runtime()
    return rt.run(enrichment.extraction_review_sample(rt))
