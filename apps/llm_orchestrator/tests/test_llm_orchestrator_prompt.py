# ruff: noqa: RUF001
"""Prompt rendering: the spec's layout, the templates, budgets per block and in total."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from llm_orchestrator.budget_settings import ContextPackSettings
from llm_orchestrator.intents import classify_intent
from llm_orchestrator.models import ContextPack, Episode, MoodFrame, RecentMessage, ReferencedArtifact, Role
from llm_orchestrator.prompt import (
    PromptBudgets,
    build_messages,
    build_system_prompt,
    directive_text,
    estimate_tokens,
    load_template,
    render,
)
from llm_orchestrator.response_description import for_recognition, for_stylist

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def msg(role: Role, content: str, minutes: int) -> RecentMessage:
    return RecentMessage(id=uuid4(), role=role, content=content, created_at=NOW + timedelta(minutes=minutes))


def pack(**kw: object) -> ContextPack:
    base: dict[str, object] = {
        "user_knowledge": ["Имя: Алия.", "Размер: M.", "Бренды: Zara, Massimo Dutti."],
        "episodes": [
            Episode(id=uuid4(), episode_card="Обожает корейские триллеры", created_at=NOW),
            Episode(
                id=uuid4(), episode_card="В IMAX было холодно от кондиционера → тёплый слой", created_at=NOW
            ),
        ],
        "recent_messages": [msg("user", "привет!", 0), msg("assistant", "Привет, Алия! Как дела?", 1)],
        "mood_frame": MoodFrame.model_validate({"emotion": {"valence": 0.7, "arousal": 0.5}}),
        "context_frame": {
            "location": {"mall_name": "Dubai Hills Mall", "floor": 1, "near_store": "zara"},
            "environment": {
                "weather": {"temp_c": 28, "condition": "clear", "sunset": "18:15"},
                "time_context": {
                    "day_of_week": "friday",
                    "part_of_day": "evening",
                    "mall_closes_in_hours": 4.5,
                },
            },
            "opportunities": [
                {
                    "store": "Zara",
                    "type": "sale",
                    "discount": "30%",
                    "relevance_reason": "user_favorite_brand",
                }
            ],
        },
        "persona_directive": "[identity]\nYou are UNDE.",
        "user_display_name": "Алия",
    }
    base.update(kw)
    return ContextPack.model_validate(base)


def test_layout_follows_the_spec_example() -> None:
    rendered = build_messages(
        pack(), "хочу пойти в кино сегодня", classify_intent("хочу пойти в кино сегодня")
    )
    system = rendered.system
    assert system.startswith("[System Prompt]\nТы UNDE — персональный AI-стилист и друг.")
    assert "Не упоминай прошлое чаще чем в каждом третьем ответе. Максимум 2-3 воспоминания за раз." in system
    order = [
        "[Persona Directive]",
        "[User Knowledge — extracted facts]",
        "[Episode Cards — precomputed snippets]",
        "[Последние сообщения]",
        "[Mood: позитивное, энергия средняя, valence 0.7]",
        "[Context — мир вокруг]",
    ]
    positions = [system.index(h) for h in order]
    assert positions == sorted(positions)
    assert "- Обожает корейские триллеры" in system
    assert 'Алия: "привет!"\nUNDE: "Привет, Алия! Как дела?"' in system
    assert "Локация: Dubai Hills Mall, 1 этаж, рядом с zara" in system
    assert "Погода: +28°C, clear, закат 18:15" in system
    assert "ТЦ закрывается через 4.5 ч" in system
    assert "  - Zara: 30% (user_favorite_brand)" in system
    assert "[Referenced Artifact" not in system  # empty blocks are left out
    assert rendered.messages == [{"role": "user", "content": "хочу пойти в кино сегодня"}]
    assert rendered.block_tokens["total"] == estimate_tokens(system)
    assert rendered.block_tokens["referenced_artifact"] == 0
    assert rendered.block_tokens["user_message"] == estimate_tokens("хочу пойти в кино сегодня")


def test_intent_templates() -> None:
    fashion = build_system_prompt(pack(), classify_intent("что надеть?"))
    navigation = build_system_prompt(pack(), classify_intent("как пройти к Zara"))
    chitchat = build_system_prompt(pack(), classify_intent("привет"))
    assert load_template("fashion.txt") in fashion and load_template("fashion.txt") not in chitchat
    assert load_template("navigation.txt") in navigation
    assert load_template("base.txt") in chitchat


def test_referenced_artifact_and_results() -> None:
    stylist = {
        "items": [
            {"item_id": "991", "sku": "ZR-1", "brand": "Zara", "name": "Платье миди", "store": "Zara DHM"}
        ]
    }
    recognition = {"items": [{"category": "bag", "matches": [{"sku_id": "MK-7", "brand": "Michael Kors"}]}]}
    p = pack(
        referenced_artifact=ReferencedArtifact(id=uuid4(), response_description=for_stylist(stylist) or ""),
        stylist_result=stylist,
        recognition_result=recognition,
        catalog=[{"sku": "C-1", "brand": "Mango", "name": "Юбка плиссе", "price": 149, "currency": "AED"}],
    )
    system = build_system_prompt(p, classify_intent("что надеть?"))
    assert (
        "[Referenced Artifact — юзер реагирует на это]\n"
        "Подборка стилиста: Zara Платье миди SKU ZR-1 item_id 991" in system
    )
    assert "[Stylist Result]\n- Zara Платье миди SKU ZR-1 item_id 991, магазин Zara DHM" in system
    assert "[Recognition Result]\n- Michael Kors (bag) SKU MK-7" in system
    assert "[Catalog]\n- Mango Юбка плиссе SKU C-1, 149 AED" in system
    assert for_recognition(recognition) == "Распознано на фото: Michael Kors (bag) SKU MK-7"


def test_recent_messages_over_budget_keep_the_newest() -> None:
    recent = [
        msg("user" if i % 2 == 0 else "assistant", f"сообщение номер {i} " + "текст " * 30, i)
        for i in range(10)
    ]
    budgets = PromptBudgets(recent_messages=300)
    rendered = build_messages(pack(recent_messages=recent), "ну что?", None, budgets)
    assert rendered.block_tokens["recent_messages"] <= 300
    assert "сообщение номер 9 " in rendered.system and "сообщение номер 0 " not in rendered.system
    kept = [i for i in range(10) if f"сообщение номер {i} " in rendered.system]
    assert kept == list(range(10 - len(kept), 10)) and rendered.dropped["recent_messages"] == 10 - len(kept)


def test_a_single_huge_message_is_cut_to_the_budget() -> None:
    huge = msg("user", "я" * 20_000, 0)
    rendered = build_messages(pack(recent_messages=[huge]), "и?", None, PromptBudgets(recent_messages=200))
    assert 0 < rendered.block_tokens["recent_messages"] <= 200
    assert "…" in rendered.system


def test_every_block_stays_within_its_budget_and_the_total() -> None:
    many = pack(
        user_knowledge=[f"Факт {i}: " + "данные " * 10 for i in range(100)],
        episodes=[Episode(id=uuid4(), episode_card=f"Карточка {i} " * 10, created_at=NOW) for i in range(50)],
        recent_messages=[msg("user", "длинное сообщение " * 100, i) for i in range(10)],
        catalog=[{"sku": f"S{i}", "brand": "Zara", "name": "Платье " * 10} for i in range(100)],
        persona_directive="\n".join(f"line {i} " * 20 for i in range(200)),
    )
    settings = ContextPackSettings()
    rendered = render(many, classify_intent("платье?"), "платье?", settings)
    budgets = PromptBudgets.from_settings(settings)
    for block in ("user_knowledge", "episodes", "recent_messages", "catalog", "persona_directive"):
        assert rendered.block_tokens[block] <= getattr(budgets, block), block
    assert rendered.total_tokens <= budgets.total
    small_total = render(many, None, "x", PromptBudgets(total=2500))
    assert small_total.total_tokens <= 2500
    assert small_total.block_tokens["catalog"] < rendered.block_tokens["catalog"]  # shrunk first
    assert small_total.block_tokens["persona_directive"] > 0


def test_token_estimate_and_directive_text() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    assert estimate_tokens("привет") == 3  # 12 bytes
    assert directive_text({"text": " hello "}) == "hello"
    assert directive_text("plain") == "plain"
    assert directive_text(None) is None and directive_text({"blocks": {}}) is None


def test_empty_pack_renders_the_template_only() -> None:
    rendered = build_messages(ContextPack(), "hi")
    assert rendered.system.startswith("[System Prompt]")
    assert rendered.block_tokens["episodes"] == 0 and rendered.block_tokens["mood"] == 0
