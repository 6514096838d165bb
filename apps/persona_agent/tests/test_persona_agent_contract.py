"""The persona_contract package: the numbers the spec fixes and the version check."""

from __future__ import annotations

import pytest

import persona_contract
from persona_agent.canonicalizer import ProfileError, canonicalize
from persona_contract import ContractVersionError, assert_compatible
from persona_contract.fields import CANONICAL_FIELDS, DEFAULTS, LEGACY_ALIASES, level_name
from persona_contract.momentum import FIELD_THRESHOLD_GROUP, MOMENTUM_LIMITS
from persona_contract.signals import (
    CONFLICTS,
    CONSERVATIVE_SIGNALS,
    SIGNAL_EFFECTS,
    SIGNAL_TYPES,
    TEMP_BLOCKS,
)
from persona_contract.stages import INACTIVITY_DOWNGRADE_DAYS, STAGE_LIMITS
from persona_contract.tones import TONE_MODES, TONE_VOICE_PRESET, VOICE_PRESETS


def test_contract_shape_follows_the_spec() -> None:
    assert persona_contract.CONTRACT_VERSION == "0.7.0"
    assert len(CANONICAL_FIELDS) == 22 == len(set(CANONICAL_FIELDS))
    assert all(0.0 <= v <= 1.0 for v in DEFAULTS.values())
    assert set(LEGACY_ALIASES.values()) <= set(CANONICAL_FIELDS)
    assert not set(LEGACY_ALIASES) & set(CANONICAL_FIELDS)
    assert len(SIGNAL_TYPES) == 14
    assert set(SIGNAL_TYPES) > CONSERVATIVE_SIGNALS
    assert {"humor_ignored", "humor_rejected"} <= CONSERVATIVE_SIGNALS
    assert "humor_positive" not in CONSERVATIVE_SIGNALS
    assert all(set(pair) <= set(SIGNAL_TYPES) and len(pair) == 2 for pair in CONFLICTS)
    assert all(set(effects) <= set(CANONICAL_FIELDS) for effects in SIGNAL_EFFECTS.values())
    assert set(TEMP_BLOCKS) <= CONSERVATIVE_SIGNALS
    assert len(TONE_MODES) == 8 and set(TONE_VOICE_PRESET) == set(TONE_MODES)
    assert set(VOICE_PRESETS) == {
        "friendly_upbeat",
        "friendly_warm",
        "soft_calm",
        "soft_empathetic",
        "neutral_confident",
        "energetic_happy",
    }
    assert set(TONE_VOICE_PRESET.values()) == set(VOICE_PRESETS)
    assert (MOMENTUM_LIMITS["safe"].per_exchange, MOMENTUM_LIMITS["safe"].per_day) == (0.10, 0.30)
    assert (MOMENTUM_LIMITS["sensitive"].per_exchange, MOMENTUM_LIMITS["sensitive"].per_day) == (0.05, 0.15)
    assert (
        FIELD_THRESHOLD_GROUP["humor_level"] == "sensitive" and FIELD_THRESHOLD_GROUP["verbosity"] == "safe"
    )
    assert set(STAGE_LIMITS) == {0, 1, 2, 3}
    zero = STAGE_LIMITS[0]
    assert level_name(zero.caps["humor_level"]) == "low"
    assert not zero.cultural_references and zero.memory_mode == "subtle"
    assert STAGE_LIMITS[2].caps == {} and STAGE_LIMITS[2].cultural_references
    assert min(INACTIVITY_DOWNGRADE_DAYS.values()) >= 45 and max(INACTIVITY_DOWNGRADE_DAYS.values()) <= 90


@pytest.mark.parametrize("version", [None, "0.7.0", "0.7.9", "0.1.0", "0.99.3"])
def test_same_major_is_compatible(version: str | None) -> None:
    assert_compatible(version)


@pytest.mark.parametrize("version", ["1.0.0", "2.7.0", "0.7", "v0.7.0", ""])
def test_other_major_or_garbage_is_refused(version: str) -> None:
    with pytest.raises(ContractVersionError) as info:
        assert_compatible(version)
    assert info.value.server_version == "0.7.0"
    assert repr(version) in str(info.value)


def test_canonicalizer_maps_aliases_and_levels() -> None:
    profile = canonicalize(
        {
            "humour": "high",
            "humor_level": 0.3,
            "emojis": "low",
            "tempo": 7,
            "x": 1,
            "overrides": {"slang": "off"},
        }
    )
    assert profile.values == {"humor_level": 0.3, "emoji_usage": 0.2, "pace": 1.0}
    assert profile.overrides == {"slang_level": 0.0}
    assert profile.unknown == ("persona_profile.x",)


@pytest.mark.parametrize(
    ("profile", "path"),
    [
        ({"humor": "lots"}, "persona_profile.humor"),
        ({"warmth": [1]}, "persona_profile.warmth"),
        ({"overrides": {"emoji": {}}}, "persona_profile.overrides.emoji"),
        ({"overrides": 3}, "persona_profile.overrides"),
        ({"warmth": float("nan")}, "persona_profile.warmth"),
    ],
)
def test_canonicalizer_names_the_bad_field(profile: dict[str, object], path: str) -> None:
    with pytest.raises(ProfileError) as info:
        canonicalize(profile)
    assert info.value.path == path
