"""Request and response bodies of the mood agent; ``MoodFrame`` is spec 02 §11's mood_frame, key
for key."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Unit = float


class Prosody(BaseModel):
    """ASR prosody hints (all optional, 0..1 unless noted) from the voice pipeline."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    valence_hint: float | None = Field(default=None, ge=0, le=1)
    arousal_hint: float | None = Field(default=None, ge=0, le=1)
    energy: float | None = Field(default=None, ge=0, le=1)
    pitch_variability: float | None = Field(default=None, ge=0, le=1)
    speech_rate_wps: float | None = Field(default=None, ge=0, le=10)


class AnalyzeRequest(BaseModel):
    """``POST /analyze``: spec 02 §11 plus optional prosody and mode (v7: ``signal`` = the fast
    local classifier only, < 50 ms; ``context`` = the LLM within the latency budget)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: UUID
    text: str = Field(min_length=1, max_length=4000)
    previous_mood_frame_id: UUID | None = None
    prosody: Prosody | None = None
    mode: Literal["signal", "context"] = "context"
    is_partial: bool = False


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True)


class Emotion(_Frame):
    valence: float
    arousal: float
    dominance: float


class Signals(_Frame):
    frustration: float
    urgency: float
    confidence: float
    fatigue: float


class Baseline(_Frame):
    valence: float
    arousal: float


class Topic(_Frame):
    shift_detected: bool
    emotional_reversal: bool
    thread_break: bool
    action: Literal["continue", "acknowledge_shift", "acknowledge_reversal", "reset_thread", "defuse"]


class StyleParams(_Frame):
    warmth: float
    tempo: Literal["slow", "normal", "fast"]
    response_length: Literal["short", "medium", "long"]
    ask_clarification: bool
    defuse_first: bool


class RiveParams(_Frame):
    warmth: float
    tension: float
    tempo: float
    gesture: str | None


class VoiceParams(_Frame):
    warmth: float
    tempo: float
    tension: float
    expressiveness: Literal["low", "moderate", "high"]


class MoodFrame(_Frame):
    mood_frame_id: str
    timestamp: str
    emotion: Emotion
    signals: Signals
    smoothed_baseline: Baseline
    topic: Topic
    style_params: StyleParams
    rive_params: RiveParams
    voice_params: VoiceParams


class Analysis(_Frame):
    """How the frame was made (a sibling of ``mood_frame`` in the response)."""

    classifier: Literal["deepseek", "gemini", "lexicon"]
    latency_ms: float
    topic_label: str | None
    spike: bool
    voice_text_mismatch: bool
    provider_errors: list[str]


class AnalyzeResponse(_Frame):
    mood_frame: MoodFrame
    analysis: Analysis
