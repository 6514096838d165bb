"""StageGate: the limits of the user's relationship stage (0→3)."""

from __future__ import annotations

from persona_contract.stages import MAX_STAGE, STAGE_LIMITS, StageLimits

__all__ = ["limits_for"]


def limits_for(stage: int) -> StageLimits:
    return STAGE_LIMITS[min(max(stage, 0), MAX_STAGE)]
