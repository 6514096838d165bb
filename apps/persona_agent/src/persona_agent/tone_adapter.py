"""ToneAdapter: one of the 8 tone modes from the mood, the context, the intent and the profile.

The first matching rule wins (order = priority):

1. ``supportive`` — frustration ≥ 0.5, valence ≤ 0.3, or the mood agent asks to defuse;
2. ``calm`` — fatigue ≥ 0.6 or night;
3. ``efficient`` — urgency ≥ 0.6, a quick/buy intent, or the mall closes within the hour;
4. ``gentle`` — confidence < 0.35 or an emotional reversal;
5. ``professional`` — formality ≥ 0.7;
6. ``enthusiastic`` — valence ≥ 0.7, arousal ≥ 0.6 and enthusiasm ≥ 0.5;
7. ``playful`` — humour ≥ 0.5 and valence ≥ 0.5;
8. ``warm`` — otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

from persona_agent.anti_pattern_guard import in_distress
from persona_agent.models import ContextFrame, MoodFrame

__all__ = ["EFFICIENT_INTENTS", "choose_tone"]

EFFICIENT_INTENTS = frozenset({"quick_question", "buy", "find_store", "availability"})


def choose_tone(
    mood: MoodFrame, ctx: ContextFrame, intent: str | None, values: Mapping[str, float]
) -> tuple[str, str]:
    """(tone_mode, the rule that chose it)."""
    e, s = mood.emotion, mood.signals
    tc = ctx.environment.time_context
    if in_distress(mood) or mood.topic.action == "defuse":
        return "supportive", "mood:distress"
    if s.fatigue >= 0.6 or tc.part_of_day == "night":
        return "calm", "fatigue_or_night"
    if (
        s.urgency >= 0.6
        or (intent or "") in EFFICIENT_INTENTS
        or (tc.mall_closes_in_hours is not None and tc.mall_closes_in_hours < 1.0)
    ):
        return "efficient", "urgency"
    if s.confidence < 0.35 or mood.topic.emotional_reversal:
        return "gentle", "low_confidence"
    if values["formality"] >= 0.7:
        return "professional", "formality"
    if e.valence >= 0.7 and e.arousal >= 0.6 and values["enthusiasm"] >= 0.5:
        return "enthusiastic", "high_positive_energy"
    if values["humor_level"] >= 0.5 and e.valence >= 0.5:
        return "playful", "humor"
    return "warm", "default"
