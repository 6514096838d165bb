"""Builds persona_directive: 7 blocks (identity, relationship, tone, style, situational, boundaries,
memory_and_references), each with structured values and ``lines`` for the system prompt, and
``text`` — the blocks rendered as one system-prompt section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from persona_contract import CONTRACT_VERSION
from persona_contract.fields import CANONICAL_FIELDS, level_name
from persona_contract.stages import StageLimits

__all__ = ["BLOCKS", "TONE_LINES", "build_directive"]

BLOCKS = ("identity", "relationship", "tone", "style", "situational", "boundaries", "memory_and_references")

TONE_LINES = {
    "supportive": "Be supportive: acknowledge the feeling first, then help with one small next step.",
    "gentle": "Be gentle: offer options, do not press for decisions.",
    "calm": "Be calm and brief; a quiet, unhurried voice.",
    "efficient": "Be efficient: the answer first, no small talk.",
    "professional": "Be professional and precise; polite address.",
    "warm": "Be warm and friendly, like a stylist who knows the user.",
    "playful": "Be playful: light humour is welcome, never at the user's expense.",
    "enthusiastic": "Share the user's excitement; keep it genuine.",
}
MEMORY_LINES = {
    "subtle": "Use what you know about the user silently; do not say that you remember it.",
    "moderate": "You may mention remembered preferences briefly when they help.",
    "full": "You may refer to earlier conversations and shared history naturally.",
}


def build_directive(
    *,
    stage: int,
    limits: StageLimits,
    tone: str,
    values: Mapping[str, float],
    situational_lines: Sequence[str],
    guard_lines: Sequence[str],
    policies: Sequence[str],
    banned_openers: Sequence[str],
    cultural: Mapping[str, Any] | None,
    upcoming_events: Sequence[Mapping[str, Any]],
    memory_allowed: bool,
    user_name: str | None,
) -> dict[str, Any]:
    levels = {f: level_name(values[f]) for f in CANONICAL_FIELDS}
    address = "formal" if values["formality"] >= 0.65 else "informal"
    address_how = "formally" if address == "formal" else "informally"
    memory_mode = limits.memory_mode if memory_allowed else "subtle"
    lv = levels
    style_lines = [
        f"Humour: {levels['humor_level']}; teasing: {levels['tease_level']}; emoji: {levels['emoji_usage']}.",
        f"Length: {lv['verbosity']}; detail: {lv['detail_orientation']}; directness: {lv['directness']}.",
        f"Warmth: {lv['warmth']}; enthusiasm: {lv['enthusiasm']}; compliments: {lv['compliment_frequency']}.",
        f"Questions: {lv['curiosity']}; proactivity: {lv['proactivity']};"
        f" honest pushback: {lv['challenge_level']}.",
    ]
    relationship_lines = [f"Relationship stage {stage} of 3; address the user {address_how}."]
    if user_name and limits.nicknames:
        relationship_lines.append(f"You may call the user {user_name} or a friendly nickname.")
    elif user_name:
        relationship_lines.append(f"Call the user {user_name}; no nicknames yet.")
    memory_lines = [MEMORY_LINES[memory_mode]]
    for ev in upcoming_events:
        if memory_allowed:
            memory_lines.append(f"Upcoming for the user: {ev['title']} in {ev['in_days']} days.")
    if cultural is not None:
        memory_lines.append(f"Cultural note you may use: {cultural['hint']}")
    else:
        memory_lines.append("No cultural references in this answer.")
    boundary_lines = [
        "Never create false urgency or scarcity, never guilt the user, never shame bodies, never sell into a "
        "bad mood, never claim to be human."
    ]
    boundary_lines += list(guard_lines)
    blocks: dict[str, dict[str, Any]] = {
        "identity": {
            "lines": [
                "You are UNDE, the user's AI fashion stylist: honest, tasteful, on the user's side.",
                "You give concrete styling help; you never invent products or prices.",
            ]
        },
        "relationship": {
            "stage": stage,
            "address": address,
            "nicknames": limits.nicknames,
            "lines": relationship_lines,
        },
        "tone": {"tone_mode": tone, "lines": [TONE_LINES[tone]]},
        "style": {"levels": levels, "values": dict(values), "lines": style_lines},
        "situational": {"lines": list(situational_lines)},
        "boundaries": {
            "policies": list(policies),
            "banned_openers": list(banned_openers),
            "lines": boundary_lines,
        },
        "memory_and_references": {
            "memory_mode": memory_mode,
            "cultural_reference": dict(cultural) if cultural else None,
            "upcoming_events": [dict(e) for e in upcoming_events] if memory_allowed else [],
            "lines": memory_lines,
        },
    }
    text = "\n".join(f"[{name}]\n" + "\n".join(blocks[name]["lines"]) for name in BLOCKS)
    return {"contract_version": CONTRACT_VERSION, "tone_mode": tone, "blocks": blocks, "text": text}
