"""RenderHintsBuilder: the contract with the app's UI (animations, listen state, cards)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_hints"]

SLOW_TONES = frozenset({"supportive", "gentle", "calm"})


def render_hints(
    tone: str, values: Mapping[str, float], avatar: Mapping[str, Any], show_cards: bool
) -> dict[str, Any]:
    return {
        "expression": avatar["expression"],
        "listen_state": avatar["listen_state"],
        "expression_transition_ms": 600 if tone in SLOW_TONES else 300,
        "animation_intensity": avatar["energy_level"],
        "text_reveal": "stream",
        "max_bubble_chars": int(160 + 320 * values["verbosity"]),
        "emoji_allowed": values["emoji_usage"] >= 0.35,
        "show_opportunity_cards": show_cards,
    }
