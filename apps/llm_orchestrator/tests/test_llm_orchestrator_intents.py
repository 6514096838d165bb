# ruff: noqa: RUF001
"""Rule-based intents (Russian + English)."""

from __future__ import annotations

import pytest

from llm_orchestrator.intents import classify_intent


@pytest.mark.parametrize(
    ("message", "kind", "stylist"),
    [
        ("что надеть на свадьбу в субботу?", "fashion", True),
        ("подбери мне платье до 300 дирхам", "fashion", True),
        ("What should I wear to a dinner tonight?", "fashion", True),
        ("мне нравится это платье", "fashion", False),
        ("как пройти к Zara?", "navigation", False),
        ("where is the nearest restroom", "navigation", False),
        ("на каком этаже Massimo Dutti", "navigation", False),
        ("какие магазины тут есть", "navigation", False),
        ("забудь это, пожалуйста", "forget", False),
        ("please forget that", "forget", False),
        ("что это за сумка у девушки?", "recognition", False),
        ("привет! как дела?", "chitchat", False),
        ("", "chitchat", False),
    ],
)
def test_intents(message: str, kind: str, stylist: bool) -> None:
    intent = classify_intent(message)
    assert intent.type == kind
    assert intent.requires_stylist is stylist
    assert intent.requires_recognition is False


def test_a_photo_routes_to_recognition() -> None:
    intent = classify_intent("найди такое же", has_photo=True, photo_url="https://cdn.example/p.jpg")
    assert intent.type == "recognition" and intent.requires_recognition
    assert intent.photo_url == "https://cdn.example/p.jpg"
    assert classify_intent("", has_photo=True, photo_url="https://cdn.example/p.jpg").requires_recognition
    assert classify_intent("забудь это", has_photo=True).type == "forget"


def test_persona_intent_speaks_the_tone_adapters_words() -> None:
    assert classify_intent("как пройти к Zara").persona_intent == "find_store"
    assert classify_intent("есть в наличии это платье в размере M?").persona_intent == "availability"
    assert classify_intent("хочу купить эти джинсы").persona_intent == "buy"
    assert classify_intent("привет").persona_intent == "chitchat"


def test_a_huge_message_is_classified() -> None:
    assert classify_intent("платье " * 5000).type == "fashion"
