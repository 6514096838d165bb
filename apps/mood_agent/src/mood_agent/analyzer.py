"""MoodAnalyzer: classification → mood_frame (spec 02 §11).

- ``smoothed_baseline``: exponential smoothing of valence/arousal with factor ``alpha`` (0.3)
  from the previous frame's baseline. A jump larger than ``spike_threshold`` (0.5) is a spike: it
  moves the baseline at half the factor unless the previous frame spiked the same way (a sustained
  change is accepted at the full factor). The avatar does not twitch on one outburst.
- ``topic``: shift when the topic label changes; emotional reversal when valence crosses neutral
  by more than the spike threshold; thread break on explicit phrases (or shift + reversal);
  ``action`` = defuse > reset_thread > acknowledge_reversal > acknowledge_shift > continue.
- voice/text mismatch: with ASR prosody hints, a text valence that differs from the voice by
  ≥ 0.4 is a mismatch (sarcasm, "fine."): valence = 40 % text + 60 % voice, clarification asked.
- ``style_params``/``rive_params``/``voice_params`` derive from the signals and the baseline.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from mood_agent.lexicon import Classification
from mood_agent.models import (
    Baseline,
    Emotion,
    MoodFrame,
    Prosody,
    RiveParams,
    Signals,
    StyleParams,
    Topic,
    VoiceParams,
)

__all__ = ["MISMATCH_THRESHOLD", "Previous", "Smoothed", "build_frame", "fuse_prosody", "smooth"]

MISMATCH_THRESHOLD = 0.4


@dataclass(frozen=True, slots=True)
class Previous:
    """What the agent keeps of the previous frame (Redis)."""

    mood_frame_id: str
    baseline_valence: float
    baseline_arousal: float
    valence: float
    topic_label: str | None
    spike_direction: int  # -1, 0, +1

    def to_dict(self) -> dict[str, Any]:
        return {
            "mood_frame_id": self.mood_frame_id,
            "baseline_valence": self.baseline_valence,
            "baseline_arousal": self.baseline_arousal,
            "valence": self.valence,
            "topic_label": self.topic_label,
            "spike_direction": self.spike_direction,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Previous:
        return cls(
            str(d["mood_frame_id"]),
            float(d["baseline_valence"]),
            float(d["baseline_arousal"]),
            float(d["valence"]),
            d.get("topic_label"),
            int(d.get("spike_direction", 0)),
        )


@dataclass(frozen=True, slots=True)
class Smoothed:
    valence: float
    arousal: float
    spike: bool
    spike_direction: int


def _r(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 2)


def smooth(prev: Previous | None, valence: float, arousal: float, alpha: float, threshold: float) -> Smoothed:
    if prev is None:
        return Smoothed(_r(valence), _r(arousal), False, 0)
    dv = valence - prev.baseline_valence
    da = arousal - prev.baseline_arousal
    spike = abs(dv) > threshold or abs(da) > threshold
    direction = (1 if dv > 0 else -1) if abs(dv) > threshold else 0
    factor = alpha
    if spike and not (direction != 0 and direction == prev.spike_direction):
        factor = alpha / 2
    return Smoothed(
        _r(prev.baseline_valence + factor * dv), _r(prev.baseline_arousal + factor * da), spike, direction
    )


def fuse_prosody(c: Classification, prosody: Prosody | None) -> tuple[float, float, bool]:
    """(valence, arousal, mismatch) from the text classification and the voice hints."""
    if prosody is None:
        return c.valence, c.arousal, False
    voice_arousal = prosody.arousal_hint
    if voice_arousal is None and (prosody.energy is not None or prosody.pitch_variability is not None):
        parts = [p for p in (prosody.energy, prosody.pitch_variability) if p is not None]
        voice_arousal = sum(parts) / len(parts)
    arousal = c.arousal if voice_arousal is None else (c.arousal + voice_arousal) / 2
    if prosody.valence_hint is None:
        return c.valence, _r(arousal), False
    mismatch = abs(c.valence - prosody.valence_hint) >= MISMATCH_THRESHOLD
    valence = (
        0.4 * c.valence + 0.6 * prosody.valence_hint if mismatch else (c.valence + prosody.valence_hint) / 2
    )
    return _r(valence), _r(arousal), mismatch


def build_frame(
    c: Classification,
    prev: Previous | None,
    prosody: Prosody | None,
    *,
    alpha: float,
    spike_threshold: float,
    now: datetime | None = None,
    frame_id: str | None = None,
) -> tuple[MoodFrame, Previous, bool, bool]:
    """(frame, what to keep for the next one, spike, voice_text_mismatch)."""
    valence, arousal, mismatch = fuse_prosody(c, prosody)
    s = smooth(prev, valence, arousal, alpha, spike_threshold)
    shift = (
        prev is not None
        and c.topic is not None
        and prev.topic_label is not None
        and c.topic != prev.topic_label
    )
    reversal = (
        prev is not None
        and (prev.valence - 0.5) * (valence - 0.5) < 0
        and abs(valence - prev.valence) > spike_threshold
    )
    thread_break = c.thread_break or (shift and reversal)
    distress = max(c.frustration, (0.5 - valence) * 2, c.fatigue * 0.5, 0.0)
    action: Literal["continue", "acknowledge_shift", "acknowledge_reversal", "reset_thread", "defuse"]
    tempo: Literal["slow", "normal", "fast"]
    length: Literal["short", "medium", "long"]
    expressiveness: Literal["low", "moderate", "high"]
    if c.frustration >= 0.6:
        action = "defuse"
    elif thread_break:
        action = "reset_thread"
    elif reversal:
        action = "acknowledge_reversal"
    elif shift:
        action = "acknowledge_shift"
    else:
        action = "continue"
    warmth = _r(0.55 + 0.35 * distress + 0.1 * (s.valence - 0.5))
    if c.urgency >= 0.6:
        tempo = "fast"
    elif c.fatigue >= 0.6 or distress >= 0.6:
        tempo = "slow"
    else:
        tempo = "normal"
    if c.urgency >= 0.6 or c.fatigue >= 0.6 or c.frustration >= 0.6:
        length = "short"
    elif c.confidence < 0.4 and c.urgency < 0.3:
        length = "long"
    else:
        length = "medium"
    tension = _r(max(c.frustration, c.urgency * 0.6, arousal - 0.5, 0.0))
    tempo_f = {"fast": 1.15, "normal": 1.0, "slow": 0.85}[tempo]
    if action == "defuse":
        gesture: str | None = "calming"
    elif action == "reset_thread":
        gesture = "reset"
    elif action == "acknowledge_shift":
        gesture = "topic_switch"
    elif valence >= 0.7:
        gesture = "nod"
    else:
        gesture = None
    if distress >= 0.6 or c.fatigue >= 0.6:
        expressiveness = "low"
    elif valence >= 0.7 and arousal >= 0.6:
        expressiveness = "high"
    else:
        expressiveness = "moderate"
    frame = MoodFrame(
        mood_frame_id=frame_id or str(uuid.uuid4()),
        timestamp=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        emotion=Emotion(valence=valence, arousal=arousal, dominance=c.dominance),
        signals=Signals(
            frustration=c.frustration, urgency=c.urgency, confidence=c.confidence, fatigue=c.fatigue
        ),
        smoothed_baseline=Baseline(valence=s.valence, arousal=s.arousal),
        topic=Topic(
            shift_detected=shift, emotional_reversal=reversal, thread_break=thread_break, action=action
        ),
        style_params=StyleParams(
            warmth=warmth,
            tempo=tempo,
            response_length=length,
            ask_clarification=c.confidence < 0.35 or mismatch,
            defuse_first=c.frustration >= 0.5,
        ),
        rive_params=RiveParams(warmth=warmth, tension=tension, tempo=tempo_f, gesture=gesture),
        voice_params=VoiceParams(
            warmth=warmth, tempo=tempo_f, tension=tension, expressiveness=expressiveness
        ),
    )
    keep = Previous(
        frame.mood_frame_id,
        s.valence,
        s.arousal,
        valence,
        c.topic or (prev.topic_label if prev else None),
        s.spike_direction,
    )
    return frame, keep, s.spike, mismatch
