"""Request and response bodies of the persona agent (pydantic v2).

Unknown keys in the sensor frames are ignored (the Mood and Context agents may add fields in a
minor version); a known key with a wrong type is a 422 that names it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from persona_contract.signals import SIGNAL_TYPES
from unde_common.web import SafeId

_Unit = Field(ge=0.0, le=1.0)


def _calendar_date(text: str) -> str:
    dt.date.fromisoformat(text)  # ValueError ("month must be in 1..12") → the field's 422
    return text


class _Lenient(BaseModel):
    # non-finite numbers are refused by every float field (the shared edge refuses them in JSON too)
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class Emotion(_Lenient):
    valence: float = Field(default=0.5, ge=0.0, le=1.0)
    arousal: float = Field(default=0.4, ge=0.0, le=1.0)
    dominance: float = Field(default=0.5, ge=0.0, le=1.0)


class MoodSignals(_Lenient):
    frustration: float = Field(default=0.0, ge=0.0, le=1.0)
    urgency: float = Field(default=0.0, ge=0.0, le=1.0)
    confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    fatigue: float = Field(default=0.0, ge=0.0, le=1.0)


class Topic(_Lenient):
    shift_detected: bool = False
    emotional_reversal: bool = False
    thread_break: bool = False
    action: str = "continue"


class MoodVoice(_Lenient):
    warmth: float | None = Field(default=None, ge=0.0, le=1.0)
    tempo: float | None = Field(default=None, ge=0.5, le=2.0)
    tension: float | None = Field(default=None, ge=0.0, le=1.0)


class MoodFrame(_Lenient):
    """The parts of the Mood Agent's mood_frame (spec 02 §11) the persona agent reads."""

    mood_frame_id: str | None = None
    emotion: Emotion = Emotion()
    signals: MoodSignals = MoodSignals()
    topic: Topic = Topic()
    voice_params: MoodVoice = MoodVoice()


class Location(_Lenient):
    type: str | None = None
    mall_id: str | None = None
    near_store: str | None = None


class TimeContext(_Lenient):
    day_of_week: str | None = None
    part_of_day: Literal["morning", "afternoon", "evening", "night"] | None = None
    #: hours until the mall closes (0 when closed); at most a week, as the Context Agent computes it
    mall_closes_in_hours: float | None = Field(default=None, ge=0, le=168)
    is_rush_hour: bool | None = None


class Environment(_Lenient):
    time_context: TimeContext = TimeContext()


class Cultural(_Lenient):
    sensitivity_level: Literal["high", "medium", "low"] = "medium"
    active_period: str | None = None
    next_meal_break: str | None = None
    is_pre_meal_break: bool = False
    nearby_holidays: list[Any] = Field(default_factory=list)


class Opportunity(_Lenient):
    store: str | None = None
    type: str | None = None
    discount: str | None = None
    title: str | None = None
    relevance_reason: str | None = None


class ContextFrame(_Lenient):
    """The parts of the Context Agent's context_frame (spec 02 §15) the persona agent reads."""

    context_frame_id: str | None = None
    location: Location = Location()
    environment: Environment = Environment()
    cultural: Cultural = Cultural()
    opportunities: list[Opportunity] = Field(default_factory=list)


class Budget(_Lenient):
    tier: Literal["tight", "moderate", "premium"] | None = None
    max_item_price: float | None = Field(default=None, ge=0)
    currency: str = "AED"


class Body(_Lenient):
    weight_sensitive: bool = False
    weight_goal: bool = False


class LifeEvent(_Lenient):
    type: str
    #: a calendar date, ``YYYY-MM-DD`` ("2026-13-45" is a 422, not a crash later)
    date: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$"), AfterValidator(_calendar_date)]
    title: str | None = None


class UserKnowledgeCompact(_Lenient):
    name: str | None = None
    budget: Budget = Budget()
    body: Body = Body()
    life_events: list[LifeEvent] = Field(default_factory=list)
    favorite_brands: list[str] = Field(default_factory=list)


class ResponseMeta(_Lenient):
    """What UNDE's earlier answers contained (most recent last)."""

    tone_mode: str | None = None
    had_humor: bool = False
    had_question: bool = False
    had_compliment: bool = False
    had_cultural_ref: bool = False
    had_memory_ref: bool = False
    opener: str | None = None


class PersonaRequest(BaseModel):
    """``POST /persona`` body (spec 02 §16)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    user_id: UUID
    mood_frame: MoodFrame | None = None
    context_frame: ContextFrame | None = None
    user_intent: str | None = Field(default=None, max_length=64)
    persona_profile: dict[str, Any] | None = None
    relationship_stage: int | None = Field(default=None, ge=0, le=3)
    user_knowledge_compact: UserKnowledgeCompact | None = None
    last_n_response_meta: list[ResponseMeta] = Field(default_factory=list, max_length=20)
    exchange_id: SafeId | None = None
    contract_version: str | None = None


SignalType = Literal[SIGNAL_TYPES]  # type: ignore[valid-type]


class FeedbackRequest(BaseModel):
    """``POST /persona/feedback`` body."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: UUID
    signal_id: UUID
    exchange_id: SafeId
    signal_type: SignalType
    signal_data: dict[str, Any] = Field(default_factory=dict)
    contract_version: str | None = None


class FlushRequest(BaseModel):
    """``POST /persona/flush`` body."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: UUID
    exchange_id: SafeId
    contract_version: str | None = None
