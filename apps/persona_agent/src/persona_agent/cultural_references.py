"""Cultural reference matcher: a reference from the static registry passes 6 gates.

1. ``stage`` — the relationship stage allows cultural references (not at stage 0);
2. ``temp_block`` — no active ``cultural_ref`` block (the user rejected one recently);
3. ``openness`` — the resolved ``cultural_reference_openness`` ≥ 0.35;
4. ``sensitivity`` — the context's level: ``high`` any reference (explicit ones preferred),
   ``medium`` only neutral ones (no named observances),
   ``low`` none;
5. ``mood`` — frustration < 0.5 and valence ≥ 0.35;
6. ``relevance`` — a registry entry matches the active period or a nearby holiday, and no cultural
   reference was made in the last 3 answers (cooldown).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from persona_agent.models import ContextFrame, MoodFrame, ResponseMeta
from persona_agent.state import TempBlock
from persona_contract.stages import StageLimits

__all__ = ["GATES", "CulturalDecision", "Reference", "match_reference", "registry"]

GATES = ("stage", "temp_block", "openness", "sensitivity", "mood", "relevance")
OPENNESS_MIN = 0.35
COOLDOWN_ANSWERS = 3


@dataclass(frozen=True, slots=True)
class Reference:
    id: str
    periods: tuple[str, ...]
    neutral: bool
    hint: str


@dataclass(frozen=True, slots=True)
class CulturalDecision:
    reference: Reference | None
    gates: dict[str, bool]


@cache
def registry() -> tuple[Reference, ...]:
    raw: dict[str, Any] = json.loads(
        resources.files("persona_agent").joinpath("data/cultural_references.json").read_text("utf-8")
    )
    return tuple(
        Reference(r["id"], tuple(r["periods"]), bool(r["neutral"]), r["hint"]) for r in raw["references"]
    )


def _periods(ctx: ContextFrame) -> list[str]:
    periods = [ctx.cultural.active_period] if ctx.cultural.active_period else []
    for holiday in ctx.cultural.nearby_holidays:
        if isinstance(holiday, dict) and isinstance(holiday.get("period"), str):
            periods.append(holiday["period"])
        elif isinstance(holiday, str):
            periods.append(holiday)
    return periods


def match_reference(
    limits: StageLimits,
    blocks: Sequence[TempBlock],
    openness: float,
    ctx: ContextFrame,
    mood: MoodFrame,
    history: Sequence[ResponseMeta],
) -> CulturalDecision:
    level = ctx.cultural.sensitivity_level
    gates = {
        "stage": limits.cultural_references,
        "temp_block": not any(b.key == "cultural_ref" for b in blocks),
        "openness": openness >= OPENNESS_MIN,
        "sensitivity": level != "low",
        "mood": mood.signals.frustration < 0.5 and mood.emotion.valence >= 0.35,
        "relevance": False,
    }
    candidate: Reference | None = None
    cooled = not any(m.had_cultural_ref for m in list(history)[-COOLDOWN_ANSWERS:])
    periods = _periods(ctx)
    if cooled and periods:
        # high: explicit references first; medium: neutral ones only
        ordered = sorted(registry(), key=lambda r: r.neutral) if level == "high" else registry()
        for ref in ordered:
            if level == "medium" and not ref.neutral:
                continue
            if any(p in ref.periods for p in periods):
                candidate = ref
                break
    gates["relevance"] = candidate is not None
    return CulturalDecision(candidate if all(gates.values()) else None, gates)
