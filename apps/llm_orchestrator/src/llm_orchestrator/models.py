"""The dialogue's data models (pydantic v2): episodes, recent messages, the ContextPack (spec 02 §13
blocks A-G plus catalog, stylist and recognition results), the intent and a turn's result.

Frames from the agents (mood_frame, context_frame) are read leniently: unknown keys are ignored, so
an agent may add fields in a minor version; the pack keeps the context frame as the agent sent it.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "ContextPack",
    "Episode",
    "Intent",
    "IntentType",
    "MemoryType",
    "MoodEmotion",
    "MoodFrame",
    "MoodSignals",
    "MoodTopic",
    "RecentMessage",
    "ReferencedArtifact",
    "Role",
    "TurnResult",
]

MemoryType = Literal["emotion", "preference", "fact", "event", "general"]
Role = Literal["user", "assistant", "system"]
IntentType = Literal["chitchat", "fashion", "navigation", "recognition", "forget"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Episode(_Frozen):
    """One hybrid-search row (files/sql/unde_shard/queries/hybrid_search.sql) after the SQL filters."""

    id: UUID
    #: response_description for assistant artefacts, else memory_snippet or LEFT(content, 80)
    episode_card: str
    created_at: AwareDatetime
    role: Role = "user"
    final_score: float = 0.0
    memory_type: MemoryType = "general"
    memory_confidence: float | None = Field(default=None, ge=0, le=1)


class RecentMessage(_Frozen):
    """One of the conversation's last messages (oldest first in ContextPack.recent_messages)."""

    id: UUID
    role: Role
    content: str
    created_at: AwareDatetime
    response_description: str | None = None
    reply_to_id: UUID | None = None


class ReferencedArtifact(_Frozen):
    """Block F: the assistant artefact the user's message reacts to (its response_description)."""

    id: UUID
    response_description: str
    created_at: AwareDatetime | None = None


class MoodEmotion(_Frozen):
    valence: float = Field(default=0.5, ge=0, le=1)
    arousal: float = Field(default=0.4, ge=0, le=1)
    dominance: float = Field(default=0.5, ge=0, le=1)


class MoodSignals(_Frozen):
    frustration: float = Field(default=0.0, ge=0, le=1)
    urgency: float = Field(default=0.0, ge=0, le=1)
    confidence: float = Field(default=0.7, ge=0, le=1)
    fatigue: float = Field(default=0.0, ge=0, le=1)


class MoodTopic(_Frozen):
    shift_detected: bool = False
    emotional_reversal: bool = False
    thread_break: bool = False
    action: str = "continue"


class MoodFrame(_Frozen):
    """The parts of the Mood Agent's mood_frame (spec 02 §11) the orchestrator reads; the defaults are
    a neutral frame (used when the agent is down or the frame is stale)."""

    mood_frame_id: str | None = None
    timestamp: str | None = None
    emotion: MoodEmotion = MoodEmotion()
    signals: MoodSignals = MoodSignals()
    topic: MoodTopic = MoodTopic()


class ContextPack(BaseModel):
    """Everything the LLM sees besides the user's message (spec 02 §13, "Сборка ContextPack")."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    #: A. user knowledge, rendered lines (``extraction.compact_profile(...).lines``)
    user_knowledge: list[str] = Field(default_factory=list)
    #: B. episode cards after the diversity, emotional and density filters (best first)
    episodes: list[Episode] = Field(default_factory=list)
    #: C. the last messages, oldest first, without the current user message
    recent_messages: list[RecentMessage] = Field(default_factory=list)
    #: D. the mood frame (None: the agent gave nothing; the block is left out)
    mood_frame: MoodFrame | None = None
    #: E. the context frame as the Context Agent sent it
    context_frame: dict[str, Any] | None = None
    #: F. the referenced artefact (reply_to)
    referenced_artifact: ReferencedArtifact | None = None
    #: G. persona_directive.text from the Persona Agent
    persona_directive: str | None = None
    #: catalog context from the production DB (one dict per product)
    catalog: list[dict[str, Any]] = Field(default_factory=list)
    stylist_result: dict[str, Any] | None = None
    recognition_result: dict[str, Any] | None = None
    #: how the user is called in the [Последние сообщения] block (user knowledge name, else "Юзер")
    user_display_name: str | None = None


class Intent(_Frozen):
    """What the user's message asks for (``intents.classify_intent``)."""

    type: IntentType
    requires_stylist: bool = False
    requires_recognition: bool = False
    photo_url: str | None = None
    #: the value sent to the Persona Agent as ``user_intent`` (its tone adapter knows
    #: quick_question, buy, find_store, availability)
    persona_intent: str | None = None
    #: the keywords that decided it (for logs; never the message itself)
    matched: tuple[str, ...] = ()


class TurnResult(_Frozen):
    """What generate_response returns (spec 02 §13 plus the message ids and the degradations)."""

    text: str
    voice_params: dict[str, Any] | None = None
    avatar_state: dict[str, Any] | None = None
    render_hints: dict[str, Any] | None = None
    intent: IntentType
    duration_ms: int = Field(ge=0)
    model_used: str | None = None
    user_message_id: UUID
    assistant_message_id: UUID
    conversation_id: UUID
    exchange_id: str
    #: parts that fell back to a default (e.g. "mood_frame", "context_frame", "persona", "stylist")
    degraded: list[str] = Field(default_factory=list)
    #: every LLM provider failed: text is the graceful template answer
    failed: bool = False
