"""The 14 behavioural signal types, their effects, conflicts and temporary blocks.

A signal is observed by the orchestrator / app about ONE exchange (UNDE's answer → the user's
next turn) and sent to ``/persona/feedback``; ``/persona/flush`` resolves the exchange's signals:

1. duplicates (same type twice in one exchange) count once;
2. signals are nodes of a conflict graph, :data:`CONFLICTS` are its edges; in every connected
   component with more than one signal, conservative signals win (the others are discarded); a
   component with conflicting signals and no conservative one is discarded entirely;
3. the survivors' :data:`SIGNAL_EFFECTS` are summed per field, scaled by ``strength`` (0-1,
   default 1), and applied under the momentum caps; :data:`TEMP_BLOCKS` are created.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "CONFLICTS",
    "CONSERVATIVE_SIGNALS",
    "POSITIVE_SIGNALS",
    "SIGNAL_EFFECTS",
    "SIGNAL_TYPES",
    "TEMP_BLOCKS",
    "TempBlockRule",
    "conflicts_with",
]

_E = MappingProxyType

#: signal type → {field: delta}
SIGNAL_EFFECTS: Final = _E(
    {
        "humor_positive": _E({"humor_level": +0.05, "tease_level": +0.03}),
        "humor_ignored": _E({"humor_level": -0.04}),
        "humor_rejected": _E({"humor_level": -0.10, "tease_level": -0.10}),
        "cultural_ref_positive": _E({"cultural_reference_openness": +0.05}),
        "cultural_ref_rejected": _E({"cultural_reference_openness": -0.10}),
        "response_too_long": _E({"verbosity": -0.08, "detail_orientation": -0.04}),
        "response_too_short": _E({"verbosity": +0.06, "detail_orientation": +0.05}),
        "emoji_mirrored": _E({"emoji_usage": +0.05}),
        "formality_up": _E({"formality": +0.06, "slang_level": -0.05}),
        "formality_down": _E({"formality": -0.06, "slang_level": +0.03}),
        "memory_ref_positive": _E({"memory_reference_level": +0.05}),
        "memory_ref_uncomfortable": _E({"memory_reference_level": -0.10}),
        "compliment_rejected": _E({"compliment_frequency": -0.08}),
        "engagement_positive": _E({"warmth": +0.03, "enthusiasm": +0.02}),
    }
)

SIGNAL_TYPES: Final[tuple[str, ...]] = tuple(SIGNAL_EFFECTS)

#: signals that make the persona more careful; they win every conflict they are part of
CONSERVATIVE_SIGNALS: Final = frozenset(
    {
        "humor_ignored",
        "humor_rejected",
        "cultural_ref_rejected",
        "response_too_long",
        "formality_up",
        "memory_ref_uncomfortable",
        "compliment_rejected",
    }
)

#: signals that count towards relationship-stage upgrades
POSITIVE_SIGNALS: Final = frozenset(
    {
        "humor_positive",
        "cultural_ref_positive",
        "memory_ref_positive",
        "engagement_positive",
        "emoji_mirrored",
    }
)

#: conflict edges (undirected)
CONFLICTS: Final = frozenset(
    frozenset(pair)
    for pair in (
        ("humor_positive", "humor_ignored"),
        ("humor_positive", "humor_rejected"),
        ("cultural_ref_positive", "cultural_ref_rejected"),
        ("response_too_long", "response_too_short"),
        ("formality_up", "formality_down"),
        ("memory_ref_positive", "memory_ref_uncomfortable"),
        ("engagement_positive", "humor_rejected"),
        ("engagement_positive", "cultural_ref_rejected"),
        ("engagement_positive", "memory_ref_uncomfortable"),
        ("engagement_positive", "compliment_rejected"),
    )
)


def conflicts_with(a: str, b: str) -> bool:
    return frozenset((a, b)) in CONFLICTS


@dataclass(frozen=True, slots=True)
class TempBlockRule:
    """A signal that blocks a feature for a while (``persona_temp_blocks``, max 20 per user)."""

    key: str
    hours: int
    reason: str


#: signal type → the temporary block it creates
TEMP_BLOCKS: Final = _E(
    {
        "humor_rejected": TempBlockRule(key="humor", hours=24, reason="humor_rejected"),
        "cultural_ref_rejected": TempBlockRule(key="cultural_ref", hours=168, reason="cultural_ref_rejected"),
        "memory_ref_uncomfortable": TempBlockRule(key="memory", hours=72, reason="memory_ref_uncomfortable"),
        "compliment_rejected": TempBlockRule(key="compliments", hours=48, reason="compliment_rejected"),
    }
)

#: what a temp block key forces (field → max value) while active
BLOCK_FIELD_CAPS: Final = _E(
    {
        "humor": _E({"humor_level": 0.0, "tease_level": 0.0}),
        "cultural_ref": _E({"cultural_reference_openness": 0.0}),
        "memory": _E({"memory_reference_level": 0.1}),
        "compliments": _E({"compliment_frequency": 0.0}),
    }
)
