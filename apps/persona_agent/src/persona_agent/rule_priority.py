"""RulePriorityResolver: hard bans > overrides > stage > profile > defaults.

Each field starts at its default, is replaced by the profile value, capped by the stage, replaced
by an explicit user override (Settings UI), and finally bounded by every hard ban (temporary
blocks, anti-manipulation and mood guards, situational protections). ``sources`` tells which
tier decided each field (debug output, golden tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from persona_contract.fields import CANONICAL_FIELDS, DEFAULTS
from persona_contract.stages import StageLimits

__all__ = ["HardBan", "Resolved", "resolve"]


@dataclass(frozen=True, slots=True)
class HardBan:
    """``field`` bounded above (``max``) or below (``min``) by ``value``; ``reason`` names the rule."""

    field: str
    op: Literal["max", "min"]
    value: float
    reason: str


@dataclass(frozen=True, slots=True)
class Resolved:
    values: dict[str, float]
    sources: dict[str, str]


def resolve(
    profile: Mapping[str, float],
    overrides: Mapping[str, float],
    limits: StageLimits,
    bans: Iterable[HardBan],
) -> Resolved:
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for name in CANONICAL_FIELDS:
        value, source = DEFAULTS[name], "defaults"
        if name in profile:
            value, source = profile[name], "profile"
        cap = limits.caps.get(name)
        if cap is not None and value > cap:
            value, source = cap, "stage"
        if name in overrides:
            value, source = overrides[name], "override"
        values[name] = value
        sources[name] = source
    for ban in bans:
        current = values[ban.field]
        if (ban.op == "max" and current > ban.value) or (ban.op == "min" and current < ban.value):
            values[ban.field] = ban.value
            sources[ban.field] = f"hard_ban:{ban.reason}"
    return Resolved({k: round(v, 4) for k, v in values.items()}, sources)
