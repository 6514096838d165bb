"""AvatarDirector: expression, energy level, listen state and a reactive gesture for the Rive avatar."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from persona_agent.models import MoodFrame

__all__ = ["EXPRESSIONS", "avatar_state"]

EXPRESSIONS = {
    "supportive": "concerned_soft",
    "gentle": "soft_smile",
    "calm": "calm",
    "efficient": "focused",
    "professional": "neutral",
    "warm": "smile",
    "playful": "playful_smile",
    "enthusiastic": "excited",
}
LISTEN_STATES = {
    "supportive": "empathetic",
    "gentle": "empathetic",
    "calm": "relaxed",
    "efficient": "attentive",
    "professional": "attentive",
    "warm": "engaged",
    "playful": "engaged",
    "enthusiastic": "engaged",
}


def _gesture(tone: str, mood: MoodFrame) -> str | None:
    if mood.topic.action == "defuse" or tone == "supportive":
        return "open_palms"
    if mood.topic.thread_break:
        return "reset_posture"
    if mood.topic.shift_detected:
        return "topic_switch"
    if tone == "enthusiastic":
        return "small_clap"
    if tone == "playful":
        return "head_tilt"
    return None


def avatar_state(tone: str, values: Mapping[str, float], mood: MoodFrame) -> dict[str, Any]:
    energy = 0.2 + 0.4 * values["enthusiasm"] + 0.4 * mood.emotion.arousal
    if tone in ("supportive", "calm", "gentle"):
        energy = min(energy, 0.45)
    return {
        "expression": EXPRESSIONS[tone],
        "energy_level": round(min(1.0, max(0.0, energy)), 2),
        "listen_state": LISTEN_STATES[tone],
        "gesture": _gesture(tone, mood),
    }
