"""The persona rule engine: request + user state → the four outputs (+ debug). Pure and
deterministic (``now`` is an argument), so golden tests pin its behaviour."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from persona_agent.anti_pattern_guard import guard
from persona_agent.avatar_director import avatar_state
from persona_agent.canonicalizer import CanonicalProfile, canonicalize
from persona_agent.cultural_references import match_reference
from persona_agent.directive_builder import build_directive
from persona_agent.models import ContextFrame, MoodFrame, PersonaRequest, UserKnowledgeCompact
from persona_agent.render_hints import render_hints
from persona_agent.rule_priority import resolve
from persona_agent.situational_rules import situational
from persona_agent.stage_gate import limits_for
from persona_agent.state import UserState, effective_stage
from persona_agent.tone_adapter import choose_tone
from persona_agent.voice_director import voice_params
from persona_contract import CONTRACT_VERSION
from persona_contract.fields import DEFAULTS

__all__ = ["decide", "merge_profile"]

_EMPTY_MOOD = MoodFrame()
_EMPTY_CTX = ContextFrame()
_EMPTY_UK = UserKnowledgeCompact()
MEMORY_MIN = 0.2


def merge_profile(request_profile: CanonicalProfile, state: UserState) -> dict[str, float]:
    """The caller's profile, with the values the agent learned (stored on the shard) on top."""
    merged = dict(request_profile.values)
    merged.update(state.profile)
    return merged


def decide(req: PersonaRequest, state: UserState, now: datetime) -> dict[str, Any]:
    mood = req.mood_frame or _EMPTY_MOOD
    ctx = req.context_frame or _EMPTY_CTX
    uk = req.user_knowledge_compact or _EMPTY_UK
    canonical = canonicalize(req.persona_profile)
    profile = merge_profile(canonical, state)

    if state.known:
        stage = effective_stage(state.stage, now)
    else:
        stage = req.relationship_stage if req.relationship_stage is not None else 0
    limits = limits_for(stage)
    blocks = state.active_blocks(now)

    guarded = guard(mood, req.last_n_response_meta, blocks)
    budget_sens = canonical.overrides.get(
        "budget_sensitivity", profile.get("budget_sensitivity", DEFAULTS["budget_sensitivity"])
    )
    situation = situational(uk, ctx, budget_sens, now)
    resolved = resolve(profile, canonical.overrides, limits, [*guarded.bans, *situation.bans])
    values = resolved.values

    tone, tone_rule = choose_tone(mood, ctx, req.user_intent, values)
    cultural = match_reference(
        limits, blocks, values["cultural_reference_openness"], ctx, mood, req.last_n_response_meta
    )
    memory_allowed = values["memory_reference_level"] >= MEMORY_MIN
    show_cards = bool(ctx.opportunities) and guarded.sales_push_allowed and tone not in ("supportive", "calm")

    directive = build_directive(
        stage=stage,
        limits=limits,
        tone=tone,
        values=values,
        situational_lines=situation.lines,
        guard_lines=guarded.lines,
        policies=guarded.policies + ([] if situation.premium_upsell_allowed else ["no_premium_upsell"]),
        banned_openers=guarded.banned_openers,
        cultural={"id": cultural.reference.id, "hint": cultural.reference.hint}
        if cultural.reference
        else None,
        upcoming_events=situation.upcoming_events,
        memory_allowed=memory_allowed,
        user_name=uk.name,
    )
    voice = voice_params(tone, values, mood)
    avatar = avatar_state(tone, values, mood)
    hints = render_hints(tone, values, avatar, show_cards)
    return {
        "persona_directive": directive,
        "voice_params": voice,
        "avatar_state": avatar,
        "render_hints": hints,
        "debug": {
            "contract_version": CONTRACT_VERSION,
            "stage": stage,
            "tone_mode": tone,
            "tone_rule": tone_rule,
            "field_sources": resolved.sources,
            "hard_bans": sorted({f"{b.field}:{b.reason}" for b in [*guarded.bans, *situation.bans]}),
            "situational_rules": situation.rules,
            "cultural_gates": cultural.gates,
            "active_temp_blocks": sorted(b.key for b in blocks),
            "unknown_profile_keys": list(canonical.unknown),
            "state_source": state.source,
        },
    }
