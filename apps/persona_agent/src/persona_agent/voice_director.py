"""VoiceDirector: tone mode → one of the 6 voice presets, tuned by the profile and the mood.

``voice_params`` = preset, then: ``tempo`` x (0.9 + 0.2 · pace), ``warmth`` 70 % preset +
30 % profile warmth, ``tension`` = the mood agent's tension when given (capped at 0.6), else the
preset's. All rounded to 2 decimals; tempo within 0.8-1.2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from persona_agent.models import MoodFrame
from persona_contract.tones import TONE_VOICE_PRESET, VOICE_PRESETS

__all__ = ["voice_params"]


def _clip(value: float, lo: float, hi: float) -> float:
    return round(min(hi, max(lo, value)), 2)


def voice_params(tone: str, values: Mapping[str, float], mood: MoodFrame) -> dict[str, Any]:
    name = TONE_VOICE_PRESET[tone]
    preset = VOICE_PRESETS[name]
    tension = mood.voice_params.tension if mood.voice_params.tension is not None else preset.tension
    return {
        "preset": name,
        "warmth": _clip(0.7 * preset.warmth + 0.3 * values["warmth"], 0.0, 1.0),
        "tempo": _clip(preset.tempo * (0.9 + 0.2 * values["pace"]), 0.8, 1.2),
        "tension": _clip(min(tension, 0.6), 0.0, 1.0),
        "expressiveness": preset.expressiveness,
    }
