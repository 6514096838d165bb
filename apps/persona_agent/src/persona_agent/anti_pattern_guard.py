"""AntiPatternGuard: hard bans that no profile, override or stage can lift.

- the anti-manipulation policy (always on): no false urgency, no scarcity pressure, no guilt, no
  body shaming, no selling into a negative emotion, no pretending to be human, no dark patterns;
- mood guards: a frustrated or low user gets no humour, no teasing and no sales push;
- repetition guards from ``last_n_response_meta``: the same device three answers in a row
  (humour, questions) or compliments twice in a row is toned down, a repeated opener is banned;
- temporary blocks created by rejection signals (``persona_temp_blocks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from persona_agent.models import MoodFrame, ResponseMeta
from persona_agent.rule_priority import HardBan
from persona_agent.state import TempBlock
from persona_contract.signals import BLOCK_FIELD_CAPS

__all__ = ["ANTI_MANIPULATION", "DISTRESS_FRUSTRATION", "LOW_VALENCE", "GuardResult", "guard", "in_distress"]

#: a user at or above this frustration, or at or below this valence, is "in distress"
DISTRESS_FRUSTRATION = 0.5
LOW_VALENCE = 0.3


def in_distress(mood: MoodFrame) -> bool:
    return mood.signals.frustration >= DISTRESS_FRUSTRATION or mood.emotion.valence <= LOW_VALENCE


ANTI_MANIPULATION: tuple[str, ...] = (
    "no_false_urgency",
    "no_scarcity_pressure",
    "no_guilt_tripping",
    "no_body_shaming",
    "no_selling_into_negative_emotion",
    "no_pretending_to_be_human",
    "no_dark_pattern_upsell",
)


@dataclass(slots=True)
class GuardResult:
    bans: list[HardBan] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    sales_push_allowed: bool = True
    banned_openers: list[str] = field(default_factory=list)


def guard(mood: MoodFrame, history: Sequence[ResponseMeta], blocks: Sequence[TempBlock]) -> GuardResult:
    out = GuardResult(policies=list(ANTI_MANIPULATION))
    for block in sorted(blocks, key=lambda b: b.key):
        for name, cap in BLOCK_FIELD_CAPS.get(block.key, {}).items():
            out.bans.append(HardBan(name, "max", cap, f"temp_block:{block.key}"))
        out.lines.append(f"Do not use {block.key.replace('_', ' ')} until {block.until:%Y-%m-%d %H:%M} UTC.")

    if in_distress(mood):
        out.bans += [
            HardBan("humor_level", "max", 0.1, "mood_guard"),
            HardBan("tease_level", "max", 0.0, "mood_guard"),
            HardBan("enthusiasm", "max", 0.4, "mood_guard"),
        ]
        out.sales_push_allowed = False
        out.lines.append("The user is upset: acknowledge first, no jokes, no selling.")
    if mood.signals.fatigue >= 0.6:
        out.bans.append(HardBan("verbosity", "max", 0.35, "fatigue_guard"))

    recent = list(history)[-3:]
    if len(recent) == 3 and all(m.had_humor for m in recent):
        out.bans.append(HardBan("humor_level", "max", 0.2, "repetition:humor"))
        out.lines.append("Three jokes in a row already: no joke this time.")
    if len(recent) == 3 and all(m.had_question for m in recent):
        out.bans.append(HardBan("curiosity", "max", 0.25, "repetition:questions"))
        out.lines.append("Do not end with a question this time.")
    last_two = list(history)[-2:]
    if len(last_two) == 2 and all(m.had_compliment for m in last_two):
        out.bans.append(HardBan("compliment_frequency", "max", 0.1, "repetition:compliments"))
    openers = [m.opener for m in last_two if m.opener]
    if len(openers) == 2 and openers[0] == openers[1]:
        out.banned_openers.append(openers[0])
        out.lines.append(f"Do not open with {openers[0]!r} again.")
    return out
