"""The orchestrator's Prometheus metrics (spec 01 §19: the LLM orchestrator's and KSP's names).

Counters, never 0..1 gauges, for whatever the spec states as a share (``llm_orchestrator_errors``
> 5 %, ``_provider_fallbacks`` > 10 %, ``embedding_ingestion_errors`` > 5 %,
``user_knowledge_decrypt_errors`` > 1 %): the alert rule divides the counter's rate by the rate of
its denominator (``llm_orchestrator_turns_total``, ``embedding_ingestion_total``,
``user_knowledge_decrypt_total``). The spec's names without the app prefix
(``user_knowledge_*``, ``enrichment_*``, ``embedding_*``, ``memory_snippet_*``, ``unde_*``) are
registered unprefixed.
"""

from __future__ import annotations

from unde_common.metrics import AppMetrics

__all__ = ["OrchestratorMetrics"]

_BLOCK_TOKENS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class OrchestratorMetrics:
    """Created once per worker (before the prefork children exist)."""

    def __init__(self, metrics: AppMetrics) -> None:
        m = metrics
        self.registry = m
        self.response_time_ms = m.histogram(
            "response_time_ms", "generate_response wall time, task start to answer (ms).", ["status"]
        )
        self.context_pack_time_ms = m.histogram(
            "context_pack_time_ms", "ContextPack assembly time: agents, embedding, shard reads, filters (ms)."
        )
        self.turns = m.counter(
            "turns", "Dialogue turns answered, by status (ok, degraded, failed).", ["status"]
        )
        self.errors = m.counter(
            "errors", "Turns that raised (retryable shard errors, rejected input), by kind.", ["kind"]
        )
        self.provider_fallbacks = m.counter(
            "provider_fallbacks",
            "LLM calls moved on to the next provider, by failed provider and reason.",
            ["provider", "reason"],
        )
        self.provider_calls = m.counter(
            "provider_calls", "LLM provider attempts, by provider and outcome.", ["provider", "outcome"]
        )
        self.cost_usd = m.counter(
            "cost_usd", "LLM spend in USD from token usage and the price settings.", ["provider", "model"]
        )
        self.tokens = m.counter(
            "llm_tokens", "LLM tokens, by provider and kind (input, output).", ["provider", "kind"]
        )
        self.queue_size = m.gauge("queue_size", "Messages waiting in the Celery queue (LLEN).", ["queue"])
        self.agent_fallbacks = m.counter(
            "agent_fallbacks",
            "Agent calls answered by the last or default frame, by agent and reason.",
            ["agent", "reason"],
        )
        self.block_tokens = m.histogram(
            "context_block_tokens",
            "Estimated tokens per ContextPack block per turn.",
            ["block"],
            buckets=_BLOCK_TOKENS,
        )
        self.memory_replies = m.counter(
            "memory_replies", "Replies by whether their ContextPack carried episode cards.", ["with_memory"]
        )
        self.degraded = m.counter("degraded", "Turn parts that fell back, by part.", ["part"])
        self.decrypt_latency_ms = m.histogram(
            "user_knowledge_decrypt_latency_ms",
            "Decrypt time of one user_knowledge row (ms).",
            prefixed=False,
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
        )
        self.decrypts = m.counter(
            "user_knowledge_decrypt", "user_knowledge rows decrypted or tried.", prefixed=False
        )
        self.decrypt_errors = m.counter(
            "user_knowledge_decrypt_errors",
            "user_knowledge rows that failed authentication (skipped).",
            prefixed=False,
        )
        self.enrichment_backfill = m.counter(
            "enrichment_backfill",
            "Messages the TTL recovery sent to enrichment again (the spec's enrichment_backfill_rate).",
            prefixed=False,
        )
        self.embedding_ingestion = m.counter(
            "embedding_ingestion", "Stored messages sent to the embedding provider.", prefixed=False
        )
        self.embedding_ingestion_errors = m.counter(
            "embedding_ingestion_errors", "Stored messages whose embedding failed.", prefixed=False
        )
        self.memory_snippet_null_rate = m.gauge(
            "memory_snippet_null_rate",
            "Share of embeddable messages (last 7 days) without a memory_snippet, per shard.",
            ["shard"],
            prefixed=False,
        )
        self.enrichment_latency_s = m.histogram(
            "unde_enrichment_latency_seconds",
            "Message stored to enrichment done (s).",
            ["priority"],
            prefixed=False,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 21600),
        )
        self.enrichment_queue_size = m.gauge(
            "unde_enrichment_queue_size",
            "Messages waiting in the enrichment queue.",
            ["priority"],
            prefixed=False,
        )
        self.orphan_messages = m.gauge(
            "unde_orphan_messages",
            "User messages still pending enrichment after 1 h, per shard.",
            ["shard"],
            prefixed=False,
        )
        self.instant_extraction = m.counter(
            "unde_instant_extraction",
            "Facts extracted from messages, by knowledge type and language.",
            ["type", "language"],
            prefixed=False,
        )
        self.instant_extraction_supersede = m.counter(
            "unde_instant_extraction_supersede", "Facts that superseded an older one.", prefixed=False
        )
        self.forget_snippets = m.counter(
            "unde_forget_cascade_snippets_nullified", "Snippets nulled by soft/hard forget.", prefixed=False
        )
        self.forget_knowledge = m.counter(
            "unde_forget_cascade_knowledge_deactivated",
            "Facts deactivated by a forget of their message.",
            prefixed=False,
        )
        self.life_events_expired = m.counter(
            "life_events_expired", "life_event facts deactivated by the 03:00 expiry."
        )
        self.extraction_review_sampled = m.counter(
            "extraction_review_sampled", "Extracted facts picked by the daily 1 % review sample."
        )
        self.stream_messages = m.counter(
            "stream_messages",
            "Sentence-stream messages published on orch:stream:*, by type (sentence, reset, end).",
            ["type"],
        )
        self.stream_publish_errors = m.counter(
            "stream_publish_errors",
            "Sentence streams whose publishing failed or was too slow (the turn went on without).",
        )
        self.stream_dropped = m.counter(
            "stream_dropped", "Sentence-stream messages not published after a publish error."
        )
        self.replay_requests = m.counter(
            "replay_requests",
            "verify-and-replay calls, by outcome (ok, rejected, unavailable).",
            ["outcome"],
            prefixed=False,
        )
        self.replay_pairs_inserted = m.counter(
            "replay_pairs_inserted", "Replayed pairs of which at least one message was missing and written."
        )
        self.replay_messages_inserted = m.counter(
            "replay_messages_inserted", "Messages written by verify-and-replay (user and assistant)."
        )
        self.forget_requests = m.counter(
            "forget_requests",
            "Forget calls, by kind (soft_message, soft_topic, hard_message, erase_account) and outcome.",
            ["kind", "outcome"],
        )
        self.master_key_missing = m.gauge(
            "master_key_missing",
            "1 while the master key ring is not delivered (/run is empty after a reboot).",
        )
