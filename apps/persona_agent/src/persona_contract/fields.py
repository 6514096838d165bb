"""Canonical communication fields (22), their defaults, level bands and legacy aliases.

Every field is a float in [0, 1]. ``0`` is "none", ``1`` is "as much as fits the persona".
Level names used in directives and in legacy profiles map to the band midpoints below.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = [
    "CANONICAL_FIELDS",
    "DEFAULTS",
    "LEGACY_ALIASES",
    "LEGACY_VALUES",
    "LEVEL_BANDS",
    "level_name",
]

#: field → default value for an unknown user (stage 0)
DEFAULTS: Final = MappingProxyType(
    {
        "warmth": 0.6,
        "humor_level": 0.2,
        "tease_level": 0.1,
        "formality": 0.5,
        "verbosity": 0.5,
        "directness": 0.5,
        "emoji_usage": 0.2,
        "enthusiasm": 0.5,
        "empathy_depth": 0.5,
        "proactivity": 0.4,
        "curiosity": 0.5,
        "compliment_frequency": 0.3,
        "cultural_reference_openness": 0.3,
        "slang_level": 0.1,
        "memory_reference_level": 0.3,
        "detail_orientation": 0.5,
        "pace": 0.5,
        "reassurance_level": 0.5,
        "challenge_level": 0.3,
        "trend_focus": 0.5,
        "budget_sensitivity": 0.5,
        "body_topic_caution": 0.6,
    }
)

#: the 22 canonical communication fields, in directive order
CANONICAL_FIELDS: Final[tuple[str, ...]] = tuple(DEFAULTS)

#: old field names (profiles written before v0.7, Settings UI v1) → canonical name
LEGACY_ALIASES: Final = MappingProxyType(
    {
        "humor": "humor_level",
        "humour": "humor_level",
        "humour_level": "humor_level",
        "playfulness": "tease_level",
        "teasing": "tease_level",
        "formal": "formality",
        "formality_level": "formality",
        "response_length": "verbosity",
        "length": "verbosity",
        "emoji": "emoji_usage",
        "emojis": "emoji_usage",
        "emoji_level": "emoji_usage",
        "energy": "enthusiasm",
        "empathy": "empathy_depth",
        "initiative": "proactivity",
        "questions": "curiosity",
        "question_rate": "curiosity",
        "compliments": "compliment_frequency",
        "cultural_refs": "cultural_reference_openness",
        "cultural_references": "cultural_reference_openness",
        "slang": "slang_level",
        "memory_level": "memory_reference_level",
        "memory_mentions": "memory_reference_level",
        "detail": "detail_orientation",
        "tempo": "pace",
        "reassurance": "reassurance_level",
        "honesty": "challenge_level",
        "pushback": "challenge_level",
        "trendiness": "trend_focus",
        "budget_focus": "budget_sensitivity",
        "body_sensitivity": "body_topic_caution",
        "weight_sensitivity": "body_topic_caution",
    }
)

#: old enumerated values → number
LEGACY_VALUES: Final = MappingProxyType(
    {
        "off": 0.0,
        "none": 0.0,
        "low": 0.2,
        "medium": 0.5,
        "normal": 0.5,
        "high": 0.8,
        "max": 1.0,
        "short": 0.2,
        "long": 0.8,
        "slow": 0.2,
        "fast": 0.8,
        "casual": 0.2,
        "formal": 0.8,
    }
)

#: (upper bound inclusive, name); a value is named by the first band that contains it
LEVEL_BANDS: Final[tuple[tuple[float, str], ...]] = (
    (0.05, "off"),
    (0.35, "low"),
    (0.65, "medium"),
    (1.0, "high"),
)


def level_name(value: float) -> str:
    """``0.2`` → ``"low"`` (see :data:`LEVEL_BANDS`)."""
    for bound, name in LEVEL_BANDS:
        if value <= bound + 1e-9:
            return name
    return "high"
