"""Settings of the ContextPack (token budgets per block, memory caps, message limits, reply_to windows):
a mixin of LlmOrchestratorSettings.

The spec gives counts only (top-15 retrieval, <= 3 episodes, <= 30 % density, the last 10 messages);
the token budgets below are this app's decision. Tokens are estimated, not counted by a provider's
tokenizer: ``ceil(utf8_bytes / 4)`` (``llm_orchestrator.prompt.estimate_tokens``), which is ~1 token per
4 Latin characters and ~1 per 2 Cyrillic ones, so it over-counts rather than under-counts for every
provider the router may pick.

| block | default | when over budget |
|---|---|---|
| system prompt (template) | 700 | cut at a line boundary (the shipped templates are ~350) |
| persona directive | 700 | cut at a line boundary |
| user knowledge | 300 | trailing (lowest-priority) lines dropped |
| episodes | 300 | lowest-ranked cards dropped |
| recent messages | 1,500 | oldest messages dropped; the newest one alone is cut at its start |
| mood | 60 | one line, cut |
| context | 400 | trailing lines dropped |
| referenced artifact | 250 | cut |
| catalog | 600 | trailing items dropped |
| stylist result | 600 | trailing items dropped |
| recognition result | 400 | trailing items dropped |
| **total** (system message) | 6,000 | catalog, recognition, stylist, context, episodes, knowledge, |
|  |  | recent messages shrink in that order |

The user's message itself is outside the total: it is limited by ``max_message_chars``.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from unde_common.settings import UndeSettings


class ContextPackSettings(UndeSettings):
    """Token budgets per ContextPack block, memory caps, message limits."""

    # retrieval
    retrieval_top_k: int = Field(default=15, ge=1)
    similarity_threshold: float = Field(default=0.5, ge=0, le=1)
    max_episodes_per_response: int = Field(default=3, ge=0)
    max_memory_density_rolling_10: float = Field(default=0.3, ge=0, le=1)
    #: the rolling window of answers the density cap looks at (spec: 10)
    memory_density_window: int = Field(default=10, ge=1, le=100)
    #: diversity filter: at most this many episodes from one calendar day (spec: 3) ...
    diversity_per_day: int = Field(default=3, ge=1)
    #: ... where the calendar day is taken in this time zone (the users' local site: Dubai)
    diversity_timezone: str = "Asia/Dubai"
    #: emotional filter: a mood at or below this valence, or at or above this frustration, is negative
    #: (the persona agent's "in distress" thresholds)
    emotional_filter_valence_max: float = Field(default=0.3, ge=0, le=1)
    emotional_filter_frustration_min: float = Field(default=0.5, ge=0, le=1)

    context_pack_timeout: float = Field(default=3, gt=0)
    #: the last N messages of the conversation in the pack (spec: 10)
    recent_messages_limit: int = Field(default=10, ge=0, le=50)

    # token budgets per block (estimated tokens, see the module docstring)
    budget_system_prompt_tokens: int = Field(default=700, ge=50)
    budget_persona_directive_tokens: int = Field(default=700, ge=0)
    budget_user_knowledge_tokens: int = Field(default=300, ge=0)
    budget_episodes_tokens: int = Field(default=300, ge=0)
    budget_recent_messages_tokens: int = Field(default=1500, ge=0)
    budget_mood_tokens: int = Field(default=60, ge=0)
    budget_context_tokens: int = Field(default=400, ge=0)
    budget_referenced_artifact_tokens: int = Field(default=250, ge=0)
    budget_catalog_tokens: int = Field(default=600, ge=0)
    budget_stylist_result_tokens: int = Field(default=600, ge=0)
    budget_recognition_result_tokens: int = Field(default=400, ge=0)
    budget_total_tokens: int = Field(default=6000, ge=500)

    #: a longer user message is cut to this many characters (at a word boundary, "…" appended);
    #: an empty or whitespace-only one is refused
    max_message_chars: int = Field(default=4000, ge=100, le=100_000)

    # reply_to heuristic (spec: the last artefact within 10 min; none when 2+ within 60 s)
    reply_to_window_s: int = Field(default=600, ge=1)
    reply_to_ambiguity_s: int = Field(default=60, ge=0)

    #: a mood / context frame older than this is replaced by the default frame (local-redis TTL: 5 min)
    mood_frame_max_age_s: int = Field(default=300, ge=1)
    context_frame_max_age_s: int = Field(default=300, ge=1)

    #: a life event stays active in user knowledge this many days after its date (then life_event_expiry)
    life_event_ttl_days: int = Field(default=7, ge=0, le=365)

    @field_validator("diversity_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value
