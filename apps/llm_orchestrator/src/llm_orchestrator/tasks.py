"""Celery tasks of llm_orchestrator.

Names are ``llm_orchestrator.<task>``; the bodies come with a later issue (LLM orchestrator).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="llm_orchestrator.generate_response")
def generate_response(
    user_id: str, message: str, input_type: str = "text", explicit_reply_to: str | None = None
) -> dict[str, Any]:
    """User message → ContextPack → LLM answer (+ voice, avatar, persona feedback)."""
    raise NotImplementedError("generate_response: implemented in a later issue (LLM orchestrator)")


@shared_task(name="llm_orchestrator.enrich_message")
def enrich_message(message_id: str) -> None:
    """Embedding + snippet for one stored message."""
    raise NotImplementedError("enrich_message: implemented in a later issue (LLM orchestrator)")


@shared_task(name="llm_orchestrator.enrichment_ttl_recovery")
def enrichment_ttl_recovery() -> None:
    """Messages without embedding older than 1 h → force enrich (retry < 3, LIMIT 500)."""
    raise NotImplementedError("enrichment_ttl_recovery: implemented in a later issue (LLM orchestrator)")


@shared_task(name="llm_orchestrator.extraction_review_sample")
def extraction_review_sample() -> None:
    """1% random sample of batch extractions → review (phase 2)."""
    raise NotImplementedError("extraction_review_sample: implemented in a later issue (LLM orchestrator)")
