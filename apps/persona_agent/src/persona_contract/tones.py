"""The 8 tone modes and the 6 voice presets (spec 02 §12: friendly_upbeat, friendly_warm,
soft_calm, soft_empathetic, neutral_confident, energetic_happy)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = ["TONE_MODES", "TONE_VOICE_PRESET", "VOICE_PRESETS", "VoicePreset"]

#: tone modes in the tone adapter's tie-break order
TONE_MODES: Final[tuple[str, ...]] = (
    "supportive",
    "gentle",
    "calm",
    "efficient",
    "professional",
    "warm",
    "playful",
    "enthusiastic",
)

Expressiveness = Literal["low", "moderate", "high"]


@dataclass(frozen=True, slots=True)
class VoicePreset:
    """Base voice parameters (the Voice Server maps them to ElevenLabs settings)."""

    warmth: float
    tempo: float
    tension: float
    expressiveness: Expressiveness


VOICE_PRESETS: Final = MappingProxyType(
    {
        "friendly_upbeat": VoicePreset(warmth=0.7, tempo=1.05, tension=0.2, expressiveness="high"),
        "friendly_warm": VoicePreset(warmth=0.8, tempo=1.0, tension=0.15, expressiveness="moderate"),
        "soft_calm": VoicePreset(warmth=0.65, tempo=0.92, tension=0.1, expressiveness="low"),
        "soft_empathetic": VoicePreset(warmth=0.9, tempo=0.9, tension=0.1, expressiveness="moderate"),
        "neutral_confident": VoicePreset(warmth=0.5, tempo=1.0, tension=0.3, expressiveness="low"),
        "energetic_happy": VoicePreset(warmth=0.75, tempo=1.1, tension=0.25, expressiveness="high"),
    }
)

TONE_VOICE_PRESET: Final = MappingProxyType(
    {
        "supportive": "soft_empathetic",
        "gentle": "soft_calm",
        "calm": "soft_calm",
        "efficient": "neutral_confident",
        "professional": "neutral_confident",
        "warm": "friendly_warm",
        "playful": "friendly_upbeat",
        "enthusiastic": "energetic_happy",
    }
)
