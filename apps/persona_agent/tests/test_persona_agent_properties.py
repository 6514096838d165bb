"""Property tests: the momentum caps and the bans hold for ANY sequence of signals, profile,
overrides and mood (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from persona_agent.engine import decide
from persona_agent.feedback_processor import apply_signals
from persona_agent.models import PersonaRequest
from persona_agent.signal_buffer import BufferedSignal, resolve_signals
from persona_agent.state import StageRow, TempBlock, UserState
from persona_contract.fields import CANONICAL_FIELDS, DEFAULTS
from persona_contract.momentum import limit_for
from persona_contract.signals import CONSERVATIVE_SIGNALS, SIGNAL_TYPES, conflicts_with

EPS = 1e-5
NOW = datetime(2026, 3, 5, 12, tzinfo=UTC)

signal_st = st.builds(
    lambda t, s, ex, at, i: BufferedSignal(f"sig-{i}", f"ex-{ex}", t, s, at),
    st.sampled_from(SIGNAL_TYPES),
    st.floats(0.0, 1.0),
    st.integers(0, 5),
    st.floats(0, 1000),
    st.integers(0, 10_000),
)
unit = st.floats(0.0, 1.0)
profile_st = st.dictionaries(st.sampled_from(CANONICAL_FIELDS), unit, max_size=22)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(signal_st, max_size=10, unique_by=lambda s: s.signal_id), min_size=1, max_size=10),
    profile_st,
)
def test_momentum_caps_hold_for_any_signal_sequence(flushes: list[list[BufferedSignal]], start: Any) -> None:
    learned: dict[str, float] = dict(start)
    daily: dict[str, float] = {}
    day_start = {**DEFAULTS, **learned}
    for batch in flushes:
        resolution = resolve_signals(batch)
        before = {**DEFAULTS, **learned}
        out = apply_signals(learned, resolution.kept, daily, NOW)
        after = {**DEFAULTS, **out.profile}
        exchanges = max(1, len({s.exchange_id for s in resolution.kept}))
        for name in CANONICAL_FIELDS:
            limit = limit_for(name)
            assert 0.0 <= after[name] <= 1.0
            assert abs(after[name] - before[name]) <= limit.per_exchange * exchanges + EPS
            assert abs(after[name] - day_start[name]) <= limit.per_day + EPS
            assert abs(out.applied.get(name, 0.0) - (after[name] - before[name])) <= EPS
        learned, daily = out.profile, out.daily


@settings(max_examples=200, deadline=None)
@given(st.lists(signal_st, max_size=16, unique_by=lambda s: s.signal_id))
def test_conservative_signals_win_every_conflict(signals: list[BufferedSignal]) -> None:
    resolution = resolve_signals(signals)
    kept = resolution.kept
    kept_ids = {s.signal_id for s in kept}
    assert len(kept) + len(resolution.discarded) == len(signals)
    for a in kept:
        for b in kept:
            if a.exchange_id == b.exchange_id:
                assert not conflicts_with(a.signal_type, b.signal_type)
    for sig, reason in resolution.discarded:
        assert sig.signal_id not in kept_ids or reason == "duplicate"
        if reason == "conflict:conservative_wins":
            assert sig.signal_type not in CONSERVATIVE_SIGNALS
    # a conservative signal is only ever dropped as a duplicate of itself
    for sig, reason in resolution.discarded:
        if sig.signal_type in CONSERVATIVE_SIGNALS:
            assert reason == "duplicate"


mood_st = st.fixed_dictionaries(
    {
        "emotion": st.fixed_dictionaries({"valence": unit, "arousal": unit}),
        "signals": st.fixed_dictionaries(
            {"frustration": unit, "fatigue": unit, "urgency": unit, "confidence": unit}
        ),
    }
)
block_keys = st.lists(st.sampled_from(["humor", "cultural_ref", "memory", "compliments"]), unique=True)


@settings(max_examples=200, deadline=None)
@given(
    profile_st, profile_st, st.integers(0, 3), mood_st, block_keys, st.sampled_from(["high", "medium", "low"])
)
def test_bans_hold_for_any_profile_override_and_mood(
    profile: Any, overrides: Any, stage: int, mood: Any, blocks: list[str], sensitivity: str
) -> None:
    req = PersonaRequest.model_validate(
        {
            "user_id": "00000000-0000-4000-8000-000000000001",
            "persona_profile": {**profile, "overrides": overrides},
            "mood_frame": mood,
            "context_frame": {"cultural": {"sensitivity_level": sensitivity, "active_period": "ramadan"}},
        }
    )
    state = UserState(
        stage=StageRow(stage=stage, stage_updated_at=NOW, last_active_at=NOW),
        temp_blocks=tuple(TempBlock(k, NOW + timedelta(hours=1), "test") for k in blocks),
        known=True,
    )
    out = decide(req, state, NOW)
    values = out["persona_directive"]["blocks"]["style"]["values"]
    cultural = out["persona_directive"]["blocks"]["memory_and_references"]["cultural_reference"]
    policies = out["persona_directive"]["blocks"]["boundaries"]["policies"]
    assert {"no_false_urgency", "no_scarcity_pressure", "no_body_shaming"} <= set(policies)
    if "humor" in blocks:
        assert values["humor_level"] == 0.0 and values["tease_level"] == 0.0
    if "compliments" in blocks:
        assert values["compliment_frequency"] == 0.0
    if "cultural_ref" in blocks or stage == 0 or sensitivity == "low":
        assert cultural is None
    if mood["signals"]["frustration"] >= 0.5 or mood["emotion"]["valence"] <= 0.3:
        assert values["humor_level"] <= 0.1 and values["tease_level"] == 0.0
        assert out["render_hints"]["show_opportunity_cards"] is False
        assert out["debug"]["tone_mode"] == "supportive"
    if stage == 0 and "humor_level" not in overrides:
        assert values["humor_level"] <= 0.35
    for name in CANONICAL_FIELDS:
        assert 0.0 <= values[name] <= 1.0
