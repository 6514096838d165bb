"""Relationship stages 0-3: what each stage allows and how a user moves between them.

Stage is persisted on the shard (``relationship_stage``), never recomputed from scratch. Upgrades
happen one stage at a time at the end of an exchange (``/persona/flush``) once every requirement of
the next stage holds. Downgrades happen one stage at a time after a stage-dependent inactivity
period (lazily when the user is next seen, and by the daily 04:00 cleanup).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "INACTIVITY_DOWNGRADE_DAYS",
    "MAX_STAGE",
    "SESSION_GAP_MINUTES",
    "STAGE_LIMITS",
    "STAGE_REQUIREMENTS",
    "StageLimits",
    "StageRequirement",
]

MAX_STAGE: Final = 3

MemoryMode = Literal["subtle", "moderate", "full"]


@dataclass(frozen=True, slots=True)
class StageLimits:
    """Caps a stage puts on the profile (``field → max value``) and the features it unlocks."""

    caps: MappingProxyType[str, float]
    cultural_references: bool
    memory_mode: MemoryMode
    nicknames: bool


@dataclass(frozen=True, slots=True)
class StageRequirement:
    """What it takes to reach a stage (all must hold)."""

    min_sessions: int
    min_exchanges: int
    min_positive_signals: int
    min_days_since_previous: int


STAGE_LIMITS: Final = MappingProxyType(
    {
        # stage 0 (new user): no humour above low, no cultural references, memory subtle
        0: StageLimits(
            caps=MappingProxyType(
                {
                    "humor_level": 0.35,
                    "tease_level": 0.05,
                    "slang_level": 0.2,
                    "memory_reference_level": 0.35,
                    "cultural_reference_openness": 0.0,
                    "challenge_level": 0.35,
                    "emoji_usage": 0.5,
                }
            ),
            cultural_references=False,
            memory_mode="subtle",
            nicknames=False,
        ),
        1: StageLimits(
            caps=MappingProxyType(
                {
                    "humor_level": 0.65,
                    "tease_level": 0.35,
                    "slang_level": 0.5,
                    "memory_reference_level": 0.65,
                    "challenge_level": 0.65,
                }
            ),
            cultural_references=True,
            memory_mode="moderate",
            nicknames=False,
        ),
        # stage 2+: everything unlocked
        2: StageLimits(
            caps=MappingProxyType({}), cultural_references=True, memory_mode="full", nicknames=True
        ),
        3: StageLimits(
            caps=MappingProxyType({}), cultural_references=True, memory_mode="full", nicknames=True
        ),
    }
)

#: requirements to ENTER a stage
STAGE_REQUIREMENTS: Final = MappingProxyType(
    {
        1: StageRequirement(
            min_sessions=3, min_exchanges=20, min_positive_signals=2, min_days_since_previous=1
        ),
        2: StageRequirement(
            min_sessions=10, min_exchanges=80, min_positive_signals=8, min_days_since_previous=7
        ),
        3: StageRequirement(
            min_sessions=30, min_exchanges=300, min_positive_signals=25, min_days_since_previous=21
        ),
    }
)

#: inactivity after which a user at stage N drops to N-1 (longer for deeper relationships)
INACTIVITY_DOWNGRADE_DAYS: Final = MappingProxyType({1: 45, 2: 60, 3: 90})

#: a /persona/flush more than this long after the previous activity starts a new session
SESSION_GAP_MINUTES: Final = 30
