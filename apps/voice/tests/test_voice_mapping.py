"""The mapping voice_params → ElevenLabs voice_settings of spec 02 §12: the formula, the clamping to
ElevenLabs' ranges, the context rule of expressiveness and the named error for bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest

from voice.mapping import VoiceParamsError, map_voice_params, sends_context


def test_the_spec_formula() -> None:
    settings = map_voice_params({"warmth": 0.8, "tempo": 1.0, "tension": 0.1, "expressiveness": "warm"})
    assert settings.as_json() == {
        "stability": 0.64,
        "similarity_boost": 0.7,
        "style": 0.4,
        "use_speaker_boost": True,
        "speed": 1.0,
    }


@pytest.mark.parametrize(
    ("warmth", "stability"), [(0.0, 0.4), (0.5, 0.55), (1.0, 0.7), (1.5, 0.7), (-0.2, 0.4)]
)
def test_warmth_sets_stability_within_its_range(warmth: float, stability: float) -> None:
    assert map_voice_params({"warmth": warmth, "tempo": 1, "tension": 0}).stability == pytest.approx(
        stability
    )


@pytest.mark.parametrize(("tension", "style"), [(0.0, 0.3), (0.6, 0.9), (0.7, 1.0), (1.0, 1.0), (-1.0, 0.3)])
def test_tension_sets_style_capped_at_one(tension: float, style: float) -> None:
    assert map_voice_params({"warmth": 0.5, "tempo": 1, "tension": tension}).style == pytest.approx(style)


@pytest.mark.parametrize(("tempo", "speed"), [(0.8, 0.8), (1.2, 1.2), (1.5, 1.2), (0.5, 0.7), (1.05, 1.05)])
def test_tempo_is_speed_clamped_to_elevenlabs_range(tempo: float, speed: float) -> None:
    assert map_voice_params({"warmth": 0.5, "tempo": tempo, "tension": 0.2}).speed == pytest.approx(speed)


def test_persona_presets_map_inside_every_range() -> None:
    from persona_contract.tones import VOICE_PRESETS

    for name, preset in VOICE_PRESETS.items():
        settings = map_voice_params(
            {"warmth": preset.warmth, "tempo": preset.tempo, "tension": preset.tension}
        ).as_json()
        assert 0.4 <= settings["stability"] <= 0.7, name
        assert 0.3 <= settings["style"] <= 1.0, name
        assert 0.7 <= settings["speed"] <= 1.2, name


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tempo": 1, "tension": 0.1}, "warmth"),
        ({"warmth": 0.5, "tension": 0.1}, "tempo"),
        ({"warmth": 0.5, "tempo": 1}, "tension"),
        ({"warmth": "warm", "tempo": 1, "tension": 0.1}, "warmth"),
        ({"warmth": True, "tempo": 1, "tension": 0.1}, "warmth"),
        ({"warmth": 0.5, "tempo": math.nan, "tension": 0.1}, "tempo"),
        ({"warmth": 0.5, "tempo": 1, "tension": math.inf}, "tension"),
        ({"warmth": 0.5, "tempo": 0, "tension": 0.1}, "tempo"),
        ({"warmth": 0.5, "tempo": -1, "tension": 0.1}, "tempo"),
        ({"warmth": None, "tempo": 1, "tension": 0.1}, "warmth"),
    ],
)
def test_bad_params_raise_naming_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(VoiceParamsError) as info:
        map_voice_params(params)
    assert info.value.field == field
    assert f"voice_params.{field}" in str(info.value)


@pytest.mark.parametrize("params", [None, [], "warm", 3])
def test_params_that_are_not_an_object_are_refused(params: object) -> None:
    with pytest.raises(VoiceParamsError, match="must be an object"):
        map_voice_params(params)


@pytest.mark.parametrize(
    ("expressiveness", "context"),
    [("low", False), ("LOW", False), ("moderate", True), ("high", True), ("warm", True), (None, True)],
)
def test_expressiveness_decides_the_dialogue_context(expressiveness: str | None, context: bool) -> None:
    params: dict[str, Any] = {"warmth": 0.5, "tempo": 1, "tension": 0.1}
    if expressiveness is not None:
        params["expressiveness"] = expressiveness
    assert sends_context(params) is context


def test_expressiveness_must_be_a_string() -> None:
    with pytest.raises(VoiceParamsError) as info:
        sends_context({"warmth": 0.5, "tempo": 1, "tension": 0.1, "expressiveness": 3})
    assert info.value.field == "expressiveness"
