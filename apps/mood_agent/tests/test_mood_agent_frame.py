# ruff: noqa: RUF001  (Russian test phrases are Cyrillic on purpose)
"""The local classifier (Russian + English) and the frame builder: smoothing 0.3, spikes 0.5,
reversals, topic shifts, voice/text mismatch, and the exact mood_frame shape of spec 02 §11."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mood_agent.analyzer import Previous, build_frame, smooth
from mood_agent.lexicon import Classification, classify
from mood_agent.models import Prosody

SPEC_FRAME: dict[str, Any] = {
    "mood_frame_id": "uuid",
    "timestamp": "2026-02-13T14:30:00Z",
    "emotion": {"valence": 0.6, "arousal": 0.4, "dominance": 0.5},
    "signals": {"frustration": 0.1, "urgency": 0.3, "confidence": 0.7, "fatigue": 0.2},
    "smoothed_baseline": {"valence": 0.55, "arousal": 0.35},
    "topic": {
        "shift_detected": False,
        "emotional_reversal": False,
        "thread_break": False,
        "action": "continue",
    },
    "style_params": {
        "warmth": 0.7,
        "tempo": "normal",
        "response_length": "medium",
        "ask_clarification": False,
        "defuse_first": False,
    },
    "rive_params": {"warmth": 0.7, "tension": 0.2, "tempo": 1.0, "gesture": None},
    "voice_params": {"warmth": 0.7, "tempo": 1.0, "tension": 0.2, "expressiveness": "moderate"},
}


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, bool) or value is None:
        return "bool|null"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def neutral(**kw: Any) -> Classification:
    base: dict[str, Any] = {
        "valence": 0.5,
        "arousal": 0.4,
        "dominance": 0.5,
        "frustration": 0.0,
        "urgency": 0.0,
        "confidence": 0.7,
        "fatigue": 0.0,
        "topic": None,
        "thread_break": False,
    }
    return Classification(**{**base, **kw})


def test_frame_has_exactly_the_spec_shape() -> None:
    frame, *_ = build_frame(neutral(), None, None, alpha=0.3, spike_threshold=0.5)
    dumped = frame.model_dump(mode="json")
    assert shape(dumped) == shape(SPEC_FRAME)
    assert dumped["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("I love this dress, it's perfect!", lambda c: c.valence > 0.7 and c.topic == "clothes"),
        ("Обожаю эти кроссовки, супер!", lambda c: c.valence > 0.7 and c.topic == "shoes"),
        ("ugh, again not what I asked. USELESS!!", lambda c: c.frustration >= 0.6 and c.valence < 0.3),
        ("опять не то, сколько можно, бесит", lambda c: c.frustration >= 0.6 and c.valence < 0.3),
        ("this is not bad at all", lambda c: c.valence > 0.5),
        ("это не плохо", lambda c: c.valence > 0.5),
        ("срочно нужны туфли, ТЦ закрывается через час", lambda c: c.urgency >= 0.6 and c.topic == "shoes"),
        ("need a gift quickly, the shop is closing", lambda c: c.urgency >= 0.6 and c.topic == "gift"),
        ("so tired, long day", lambda c: c.fatigue >= 0.6),
        ("не знаю, может джинсы или юбку?", lambda c: c.confidence < 0.35 and c.topic == "clothes"),
        ("never mind, something else", lambda c: c.thread_break),
        ("забудь, давай о другом", lambda c: c.thread_break),
        ("I want this one, show me the size", lambda c: c.dominance > 0.6),
        ("ok", lambda c: c.valence == 0.5 and c.topic is None and not c.thread_break),
    ],
)
def test_lexicon_classifier(text: str, check: Any) -> None:
    result = classify(text)
    assert check(result), result


def test_smoothing_factor_and_spikes() -> None:
    prev = Previous("p", 0.5, 0.4, 0.5, None, 0)
    s = smooth(prev, 0.8, 0.4, 0.3, 0.5)
    assert (s.valence, s.arousal, s.spike) == (0.59, 0.4, False)  # 0.5 + 0.3 * 0.3
    spike = smooth(prev, 0.0, 0.4, 0.3, 0.5)  # |Δ| = 0.5 is not above the threshold
    assert spike.spike is False and spike.valence == 0.35
    prev_hi = Previous("p", 0.9, 0.4, 0.9, None, 0)
    s1 = smooth(prev_hi, 0.1, 0.4, 0.3, 0.5)  # Δ -0.8: a spike moves at half the factor
    assert s1.spike and s1.spike_direction == -1 and s1.valence == pytest.approx(0.78)
    sustained = smooth(Previous("p", 0.78, 0.4, 0.1, None, -1), 0.1, 0.4, 0.3, 0.5)
    assert sustained.spike and sustained.valence == pytest.approx(0.58)  # full factor: 0.78 - 0.3 * 0.68


def test_reversal_shift_and_actions() -> None:
    prev = Previous("p", 0.8, 0.5, 0.85, "shoes", 0)
    frame, keep, spike, _ = build_frame(
        neutral(valence=0.15, frustration=0.3, topic="price"), prev, None, alpha=0.3, spike_threshold=0.5
    )
    assert frame.topic.emotional_reversal and frame.topic.shift_detected and frame.topic.thread_break
    assert frame.topic.action == "reset_thread" and frame.rive_params.gesture == "reset"
    assert spike and keep.topic_label == "price" and keep.mood_frame_id == frame.mood_frame_id
    angry, *_ = build_frame(neutral(valence=0.1, frustration=0.8), None, None, alpha=0.3, spike_threshold=0.5)
    assert angry.topic.action == "defuse" and angry.style_params.defuse_first
    assert angry.style_params.response_length == "short" and angry.voice_params.expressiveness == "low"
    assert angry.rive_params.gesture == "calming" and angry.style_params.warmth == 0.79
    shift, *_ = build_frame(
        neutral(topic="food"),
        Previous("p", 0.5, 0.4, 0.5, "clothes", 0),
        None,
        alpha=0.3,
        spike_threshold=0.5,
    )
    assert shift.topic.action == "acknowledge_shift" and shift.rive_params.gesture == "topic_switch"
    urgent, *_ = build_frame(neutral(urgency=0.9), None, None, alpha=0.3, spike_threshold=0.5)
    assert urgent.style_params.tempo == "fast" and urgent.voice_params.tempo == 1.15


def test_voice_text_mismatch_with_prosody() -> None:
    text_happy = neutral(valence=0.8, arousal=0.5)
    frame, _, _, mismatch = build_frame(
        text_happy,
        None,
        Prosody(valence_hint=0.2, energy=0.1, pitch_variability=0.1),
        alpha=0.3,
        spike_threshold=0.5,
    )
    assert mismatch and frame.style_params.ask_clarification
    assert frame.emotion.valence == pytest.approx(0.44)  # 0.4 * 0.8 + 0.6 * 0.2
    assert frame.emotion.arousal == pytest.approx(0.3)
    agree, _, _, mismatch2 = build_frame(
        text_happy,
        None,
        Prosody(valence_hint=0.7),
        alpha=0.3,
        spike_threshold=0.5,
        now=datetime(2026, 2, 13, tzinfo=UTC),
    )
    assert not mismatch2 and agree.emotion.valence == 0.75 and agree.timestamp == "2026-02-13T00:00:00Z"
