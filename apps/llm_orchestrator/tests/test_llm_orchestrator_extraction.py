# ruff: noqa: RUF001
"""Instant fact extraction (Russian + English) and the compact profile for persona, context, prompt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from context_agent.models import CompactPreferences
from llm_orchestrator.extraction import KNOWLEDGE_TYPES, ExtractedFact, compact_profile, extract_facts
from persona_agent.models import UserKnowledgeCompact

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def by_attr(facts: list[ExtractedFact]) -> dict[str, ExtractedFact]:
    return {str(f.data["attribute"]): f for f in facts}


@dataclass(frozen=True)
class Stored:
    knowledge_type: str
    data: dict[str, Any]
    confidence: float | None
    created_at: datetime


def stored(facts: list[ExtractedFact], at: datetime = NOW) -> list[Stored]:
    return [Stored(f.knowledge_type, f.data, f.confidence, at) for f in facts]


ALIYA = (
    "Привет! Меня зовут Алия. Мой размер M, обувь 38. Бюджет 300 дирхам, экономлю. "
    "Люблю Zara и Massimo Dutti, не люблю Shein. Обожаю темно-синий. Не ем глютен. "
    "Обожаю корейские триллеры. У меня свадьба 17 марта!"
)


def test_russian_profile_message() -> None:
    facts = by_attr(extract_facts(ALIYA, NOW))
    assert facts["name"].data["value"] == "Алия" and facts["name"].knowledge_type == "style_profile"
    assert facts["size"].data["value"] == "M" and facts["size"].knowledge_type == "body_params"
    assert facts["shoe_size"].data["value"] == "38"
    assert facts["max_item_price"].data == {"attribute": "max_item_price", "value": 300.0, "currency": "AED"}
    assert facts["tier"].data["value"] == "tight"
    assert facts["brand:zara"].data["sentiment"] == "like"
    assert facts["brand:massimo dutti"].data["sentiment"] == "like"
    assert facts["brand:shein"].data["sentiment"] == "dislike"
    assert "color:navy" in facts and "color:blue" not in facts
    assert facts["diet:gluten"].knowledge_type == "behavior_patterns"
    assert facts["interest:korean_thrillers"].data["value"] == "korean_thrillers"
    wedding = facts["life_event:wedding:2026-03-17"]
    assert wedding.data["type"] == "wedding" and wedding.data["date"] == "2026-03-17"
    assert wedding.expires_at is not None and wedding.expires_at.date() == date(2026, 3, 24)
    for fact in facts.values():
        assert fact.knowledge_type in KNOWLEDGE_TYPES
        assert fact.supersede_key == "attribute" and fact.supersede_key in fact.data
        assert 0.1 <= fact.confidence <= 0.95


def test_english_profile_message() -> None:
    text = (
        "My name is Sarah. I wear size 38 and I love Mango. I'm allergic to nuts. "
        "My birthday is on May 5th. I hate yellow. I'm on a budget, max 200 AED"
    )
    facts = by_attr(extract_facts(text, NOW))
    assert facts["name"].data["value"] == "Sarah"
    assert facts["size"].data["value"] == "38"
    assert facts["brand:mango"].data["sentiment"] == "like"
    assert facts["diet:nuts"].data["restriction"] == "allergy"
    assert facts["life_event:birthday:2026-05-05"].data["date"] == "2026-05-05"
    assert facts["color:yellow"].data["sentiment"] == "dislike"
    assert facts["max_item_price"].data["value"] == 200.0 and facts["tier"].data["value"] == "tight"


def test_no_facts_from_questions_others_or_the_past() -> None:
    assert extract_facts("есть это платье в размере M?", NOW) == []
    assert extract_facts("у подруги размер S", NOW) == []
    assert extract_facts("свадьба была 17 марта", NOW) == []
    assert extract_facts("I'm tired", NOW) == []
    assert extract_facts("хочу красное платье", NOW) == []  # a request, not a colour preference
    assert extract_facts("до 5 вечера буду в ТЦ", NOW) == []
    assert extract_facts("", NOW) == []
    assert extract_facts("😀" * 5000, NOW) == []
    # a friend's wedding is still the user's event
    friend = by_attr(extract_facts("у подруги свадьба 20 апреля", NOW))
    assert "life_event:wedding:2026-04-20" in friend


def test_dates() -> None:
    past = by_attr(extract_facts("день рождения 5 февраля", NOW))  # already past this year → next year
    assert "life_event:birthday:2027-02-05" in past
    assert "life_event:interview:2026-03-02" in by_attr(extract_facts("завтра собеседование", NOW))
    assert "life_event:trip:2026-03-15" in by_attr(extract_facts("через 2 недели отпуск", NOW))
    assert "life_event:party:2026-04-10" in by_attr(extract_facts("party on 10.04", NOW))
    assert extract_facts("свадьба 31 февраля", NOW) == []  # no such day


def test_softeners_lower_confidence_and_a_huge_message_is_fine() -> None:
    plain = by_attr(extract_facts("люблю Zara", NOW))["brand:zara"].confidence
    soft = by_attr(extract_facts("наверное люблю Zara", NOW))["brand:zara"].confidence
    assert soft < plain
    assert extract_facts("слово " * 4000, NOW) == []


def test_compact_profile_feeds_persona_context_and_prompt() -> None:
    profile = compact_profile(stored(extract_facts(ALIYA, NOW)), NOW)
    uk = UserKnowledgeCompact.model_validate(profile.user_knowledge_compact)
    assert uk.name == "Алия" and profile.name == "Алия"
    assert uk.budget.tier == "tight" and uk.budget.max_item_price == 300 and uk.budget.currency == "AED"
    assert [e.date for e in uk.life_events] == ["2026-03-17"]
    assert set(uk.favorite_brands) == {"Zara", "Massimo Dutti"}
    prefs = CompactPreferences.model_validate(profile.compact_preferences)
    assert prefs.allergies == ["gluten"] and "korean_thrillers" in prefs.interests
    assert set(prefs.favorite_brands) == {"Zara", "Massimo Dutti"}
    text = "\n".join(profile.lines)
    assert profile.lines[0] == "Имя: Алия."
    assert "Размер: M. Обувь: 38." in text
    assert "Бюджет: экономит (до 300 AED за вещь)." in text
    assert "Не любит: Shein" in text and "Не ест: gluten." in text and "События: свадьба 2026-03-17." in text


def test_newer_fact_supersedes_and_past_events_drop_out() -> None:
    old = stored(extract_facts("люблю Zara. мой размер S", NOW), NOW - timedelta(days=30))
    new = stored(extract_facts("не люблю Zara. мой размер M", NOW), NOW)
    profile = compact_profile([*new, *old], NOW)
    assert profile.favorite_brands == []
    assert "Размер: M." in profile.lines
    event = Stored("life_event", {"attribute": "x", "type": "wedding", "date": "2026-02-01"}, 0.8, NOW)
    assert compact_profile([event], NOW).user_knowledge_compact["life_events"] == []


def test_compact_profile_of_nothing_and_of_odd_data() -> None:
    empty = compact_profile([], NOW)
    UserKnowledgeCompact.model_validate(empty.user_knowledge_compact)
    CompactPreferences.model_validate(empty.compact_preferences)
    assert empty.lines == [] and empty.name is None
    odd = [
        Stored("budget", {"attribute": "tier", "value": "billionaire"}, 0.5, NOW),
        Stored("life_event", {"type": "wedding", "date": "not a date"}, 0.5, NOW),
        Stored("brand_preferences", {"brand": 7}, 0.5, NOW),
        Stored("style_profile", {"name": "Лейла"}, 0.9, NOW),
    ]
    profile = compact_profile(odd, NOW)
    UserKnowledgeCompact.model_validate(profile.user_knowledge_compact)
    assert profile.name == "Лейла" and profile.user_knowledge_compact["budget"]["tier"] is None
