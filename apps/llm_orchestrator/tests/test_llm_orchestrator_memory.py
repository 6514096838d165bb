# ruff: noqa: RUF001
"""Memory rules: salience, classification, episode cards, diversity / emotional / density filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from llm_orchestrator.memory import (
    classify_memory,
    density_cap,
    diversity_filter,
    emotional_filter,
    memory_snippet,
    normalize_message,
    salience_check,
)
from llm_orchestrator.models import Episode, MemoryType, MoodFrame

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def ep(card: str, at: datetime = NOW, memory_type: MemoryType = "general") -> Episode:
    return Episode(id=uuid4(), episode_card=card, created_at=at, memory_type=memory_type)


@pytest.mark.parametrize(
    ("text", "role", "expected"),
    [
        ("обожаю корейские триллеры", "user", True),
        ("I love Korean thrillers a lot", "user", True),
        ("ок", "user", False),
        ("👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍", "user", False),
        ("ок 👍👍👍👍👍👍👍👍👍👍👍👍👍👍", "user", False),
        ("!!!!!!!!!!!!!!!!!!!!!!", "user", False),
        ("exactly fifteen!", "user", False),
        ("обожаю корейские триллеры", "assistant", False),
        ("[deleted]", "user", False),
        ("", "user", False),
    ],
)
def test_salience(text: str, role: str, expected: bool) -> None:
    assert salience_check(text, role) is expected


@pytest.mark.parametrize(
    ("text", "memory_type"),
    [
        ("устала после работы", "emotion"),
        ("в прошлый раз в кино было холодно", "event"),
        ("Дима предложил сходить куда-нибудь", "general"),
        ("обожаю корейские триллеры", "preference"),
        ("не ем глютен", "fact"),
        ("I'm so stressed and tired today", "emotion"),
        ("my name is Sarah", "fact"),
        ("we went to a wedding last week", "event"),
    ],
)
def test_classify_memory_follows_the_spec_examples(text: str, memory_type: str) -> None:
    assert classify_memory(text)[0] == memory_type


def test_intensifiers_raise_and_softeners_lower_the_confidence() -> None:
    plain = classify_memory("люблю синий цвет")[1]
    assert classify_memory("очень люблю синий цвет, всегда!")[1] > plain
    assert classify_memory("наверное люблю синий цвет, может быть")[1] < plain
    assert classify_memory("I absolutely love navy")[1] > classify_memory("I love navy")[1]
    assert classify_memory("maybe I kind of like navy")[1] < classify_memory("I like navy")[1]
    assert classify_memory("привет")[1] == 0.5
    for text in ("очень " * 50, "может " * 50, "", "x" * 20_000):
        assert 0.1 <= classify_memory(text)[1] <= 0.95


@pytest.mark.parametrize(
    ("text", "card"),
    [
        ("Привет! Я экономлю на отпуск, бюджет ограничен 😅", "Экономит на отпуск, бюджет ограничен"),
        ("Ну короче я люблю платья миди. И еще кое-что", "Любит платья миди"),
        ("я устала после работы", "Устала после работы"),
        ("Я не ем глютен.", "Не ест глютен"),
        ("I really love Zara", "Really loves Zara"),
        ("I'm saving for a vacation", "Is saving for a vacation"),
        ("hi! I go to the gym every morning", "Goes to the gym every morning"),
        ("меня зовут Алия", "Зовут Алия"),
    ],
)
def test_memory_snippet_is_a_short_third_person_card(text: str, card: str) -> None:
    assert memory_snippet(text) == card


def test_memory_snippet_edges() -> None:
    assert memory_snippet("") == ""
    assert memory_snippet("😀😀😀") == ""
    long = memory_snippet("обожаю " + "очень длинные истории про корейские триллеры " * 50)
    assert len(long) <= 100 and long.endswith("…")
    assert memory_snippet("x" * 20_000).endswith("…")


def test_normalize_message() -> None:
    assert normalize_message("  привет \x00мир  ", 4000) == "привет  мир"
    for empty in ("", "   ", "\n\t", "\x00"):
        with pytest.raises(ValueError, match="empty"):
            normalize_message(empty, 4000)
    cut = normalize_message("слово " * 4000, 4000)  # a 24 kB message
    assert len(cut) <= 4000 and cut.endswith("слово…")
    hard = normalize_message("я" * 20_000, 4000)
    assert len(hard) == 4000 and hard.endswith("…")


def test_diversity_filter_keeps_three_per_local_day() -> None:
    day = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    episodes = [ep(f"a{i}", day + timedelta(minutes=i)) for i in range(5)]
    # 21:30 UTC on the 9th is already the 10th in Dubai (UTC+4)
    late = [ep(f"b{i}", datetime(2026, 3, 9, 21, 30, tzinfo=UTC) + timedelta(minutes=i)) for i in range(2)]
    kept = diversity_filter([*episodes, *late], per_day=3)
    assert [e.episode_card for e in kept] == ["a0", "a1", "a2", "b0", "b1"]
    assert diversity_filter([], per_day=3) == []


def test_emotional_filter_excludes_painful_memories_on_a_negative_mood() -> None:
    painful = [
        ep("Рассталась с Димой, было тяжело", memory_type="event"),
        ep("Устала и грустно после работы", memory_type="emotion"),
        ep("Got fired last month", memory_type="event"),
    ]
    fine = [ep("Обожает корейские триллеры", memory_type="preference"), ep("Устала выбирать платье")]
    episodes = [*painful, *fine]
    sad = MoodFrame.model_validate({"emotion": {"valence": 0.2}})
    kept, excluded = emotional_filter(episodes, sad)
    assert kept == fine and excluded == painful
    frustrated = MoodFrame.model_validate({"emotion": {"valence": 0.6}, "signals": {"frustration": 0.7}})
    assert emotional_filter(episodes, frustrated)[1] == painful
    defuse = MoodFrame.model_validate({"topic": {"action": "defuse"}})
    assert emotional_filter(episodes, defuse)[1] == painful
    happy = MoodFrame.model_validate({"emotion": {"valence": 0.8}})
    assert emotional_filter(episodes, happy) == (episodes, [])
    assert emotional_filter(episodes, None) == (episodes, [])


def test_density_cap() -> None:
    episodes = [ep(f"e{i}") for i in range(5)]
    kept, used = density_cap(episodes, [], max_per_response=3)
    assert [e.episode_card for e in kept] == ["e0", "e1", "e2"] and used
    # newest first: 2 of the previous 9 answers used memory → a third is allowed (3/10 = 30 %)
    assert density_cap(episodes, [True, False, True] + [False] * 7)[1] is True
    # 3 of the previous 9 → this one would make 4/10 > 30 %: none
    assert density_cap(episodes, [True, True, True] + [False] * 7) == ([], False)
    # the 10th flag (oldest) leaves the window
    assert density_cap(episodes, [True, True] + [False] * 7 + [True])[1] is True
    assert density_cap([], [False] * 10) == ([], False)
    assert density_cap(episodes, [], max_per_response=0) == ([], False)
    assert density_cap(episodes, [], max_density=0.0) == ([], False)


def test_density_cap_holds_over_a_long_conversation() -> None:
    flags: list[bool] = []  # newest first
    for _ in range(200):
        _, used = density_cap([ep("x")], flags)
        flags.insert(0, used)
    windows = [sum(flags[i : i + 10]) for i in range(len(flags) - 9)]
    assert max(windows) == 3 and sum(flags) >= 55
