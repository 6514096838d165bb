"""Momentum caps: how fast a profile field may move under behavioural signals.

Safe fields: ±0.10 per exchange, ±0.30 per day. Sensitive fields (humour, teasing, memory,
cultural references, body topics, challenge, compliments, slang): ±0.05 per exchange, ±0.15 per
day. "Per day" is the UTC calendar day, tracked in ``signal_daily_deltas`` (kept 7 days).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from persona_contract.fields import CANONICAL_FIELDS

__all__ = ["FIELD_THRESHOLD_GROUP", "MOMENTUM_LIMITS", "SENSITIVE_FIELDS", "MomentumLimit", "limit_for"]

Group = Literal["safe", "sensitive"]


@dataclass(frozen=True, slots=True)
class MomentumLimit:
    per_exchange: float
    per_day: float


MOMENTUM_LIMITS: Final = MappingProxyType(
    {
        "safe": MomentumLimit(per_exchange=0.10, per_day=0.30),
        "sensitive": MomentumLimit(per_exchange=0.05, per_day=0.15),
    }
)

SENSITIVE_FIELDS: Final = frozenset(
    {
        "humor_level",
        "tease_level",
        "memory_reference_level",
        "cultural_reference_openness",
        "body_topic_caution",
        "challenge_level",
        "compliment_frequency",
        "slang_level",
    }
)

FIELD_THRESHOLD_GROUP: Final[MappingProxyType[str, Group]] = MappingProxyType(
    {f: ("sensitive" if f in SENSITIVE_FIELDS else "safe") for f in CANONICAL_FIELDS}
)


def limit_for(field: str) -> MomentumLimit:
    return MOMENTUM_LIMITS[FIELD_THRESHOLD_GROUP[field]]
