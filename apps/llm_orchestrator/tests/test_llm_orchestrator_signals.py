# ruff: noqa: RUF001
"""Behavioural signals and response meta against the persona agent's contract."""

from __future__ import annotations

from llm_orchestrator.intents import classify_intent
from llm_orchestrator.models import MoodFrame
from llm_orchestrator.signals import SIGNAL_TYPES, detect_behavioral_signals, response_meta
from persona_agent.models import FeedbackRequest, ResponseMeta
from persona_contract import signals as contract


def kinds(found: list[tuple[str, dict[str, object]]]) -> list[str]:
    return [k for k, _ in found]


def test_signal_types_are_the_persona_contracts() -> None:
    assert SIGNAL_TYPES == contract.SIGNAL_TYPES


def test_humour_reactions() -> None:
    joke = {"had_humor": True}
    assert kinds(detect_behavioral_signals("ахаха 😂", "шучу!", None, joke)) == ["humor_positive"]
    assert kinds(detect_behavioral_signals("не смешно", "шучу!", None, joke)) == ["humor_rejected"]
    ignored = detect_behavioral_signals("покажи юбки", "шучу!", None, joke)
    assert ignored == [("humor_ignored", {"trigger": "no_reaction", "strength": 0.5})]
    assert detect_behavioral_signals("покажи юбки", "ок", None, {}) == []
    assert "humor_positive" not in kinds(detect_behavioral_signals("хороший характер", "x", None, joke))


def test_length_formality_emoji_memory_compliments_engagement() -> None:
    assert kinds(detect_behavioral_signals("короче, слишком длинно", "...", None, None)) == [
        "response_too_long"
    ]
    assert kinds(detect_behavioral_signals("tell me more", "...", None, None)) == ["response_too_short"]
    assert kinds(detect_behavioral_signals("давай на ты", "...", None, None)) == ["formality_down"]
    assert kinds(detect_behavioral_signals("Скажите, а Вы можете помочь", "...", None, None)) == [
        "formality_up"
    ]
    assert kinds(detect_behavioral_signals("ого 😍", "вот платье ✨", None, None)) == ["emoji_mirrored"]
    memory = {"had_memory_ref": True}
    assert kinds(detect_behavioral_signals("ты помнишь!", "...", None, memory)) == ["memory_ref_positive"]
    assert kinds(detect_behavioral_signals("откуда ты знаешь?", "...", None, None)) == [
        "memory_ref_uncomfortable"
    ]
    compliment = {"had_compliment": True}
    assert kinds(detect_behavioral_signals("не льсти мне", "...", None, compliment)) == [
        "compliment_rejected"
    ]
    assert kinds(detect_behavioral_signals("спасибо, супер!", "...", None, None)) == ["engagement_positive"]
    happy = MoodFrame.model_validate({"emotion": {"valence": 0.9}})
    assert detect_behavioral_signals("ок", "...", happy, None) == [
        ("engagement_positive", {"trigger": "mood", "strength": 0.5})
    ]
    # a rejection is not engagement
    assert "engagement_positive" not in kinds(
        detect_behavioral_signals("спасибо, но не льсти", "...", None, compliment)
    )


def test_a_list_of_metas_uses_the_latest_and_the_bodies_validate() -> None:
    metas = [{"had_humor": False}, {"had_humor": True}]
    found = detect_behavioral_signals("lol 😂", "haha", None, metas)
    assert kinds(found) == ["humor_positive"]
    for signal_type, data in found:
        FeedbackRequest.model_validate(
            {
                "user_id": "00000000-0000-0000-0000-000000000001",
                "signal_id": "00000000-0000-0000-0000-000000000002",
                "exchange_id": "ex-1",
                "signal_type": signal_type,
                "signal_data": data,
            }
        )
    assert detect_behavioral_signals("", None, None, None) == []
    assert detect_behavioral_signals("спасибо " * 3000, None, None, []) != []


def test_response_meta_matches_persona() -> None:
    text = "Привет, Алия! Тебе идёт navy 😉 Кстати, в Рамадан ТЦ открыт до 2 ночи. Показать ещё?"
    meta = response_meta(text, classify_intent("что надеть"), had_memory=True, tone_mode="warm")
    assert ResponseMeta.model_validate(meta).model_dump() == meta
    assert (
        meta["had_question"]
        and meta["had_compliment"]
        and meta["had_cultural_ref"]
        and meta["had_memory_ref"]
    )
    assert meta["opener"] == "привет алия" and meta["tone_mode"] == "warm"
    plain = response_meta("Вот три варианта.", None, had_memory=False)
    assert not any(
        plain[k]
        for k in ("had_humor", "had_question", "had_compliment", "had_cultural_ref", "had_memory_ref")
    )
    assert response_meta("", None, False)["opener"] is None
