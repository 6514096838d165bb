# ruff: noqa: RUF001  (Cyrillic on purpose)
"""The LLM prompt from a ContextPack: one system message in the spec's ContextPack layout (spec 02
§13, "Пример ContextPack для LLM"), then the user's message as the only chat turn.

Decisions:

- **Layout.** The system message is the template (``prompts/base.txt`` + ``fashion.txt`` or
  ``navigation.txt`` by intent), then the blocks in this order: [Persona Directive], [User Knowledge
  — extracted facts], [Episode Cards — precomputed snippets], [Последние сообщения], [Mood: …],
  [Context — мир вокруг], [Referenced Artifact], [Stylist Result], [Recognition Result], [Catalog];
  an empty block is left out. The recent messages are rendered inside the system message
  (``Имя: "…"`` / ``UNDE: "…"``, one line each, newlines folded) rather than as chat turns: every
  provider accepts it (no role-alternation rules to satisfy), and it is the spec's layout. The
  current message is not repeated there; it is the one user turn.
- **Token estimate**: ``ceil(utf8_bytes / 4)`` — ~4 Latin or ~2 Cyrillic characters per token; it
  over-counts for every provider's tokenizer, so a budget is never exceeded in practice. Each line
  costs its estimate + 1 (the newline).
- **Budgets per block** (``ContextPackSettings.budget_*_tokens``): a block keeps its lines in
  priority order until the next would not fit: recent messages keep the newest, episodes the best
  ranked, knowledge / context / items their first lines. When even the first line does not fit it is
  cut (UTF-8 safe, "…"). Then the **total**: if the system message is still over
  ``budget_total_tokens`` the blocks catalog, recognition, stylist, context, episodes, user
  knowledge, recent messages are shrunk by the overflow, in that order. The template and the persona
  directive are never dropped (only cut to their own budgets).
- Every rendering returns ``block_tokens`` (estimated tokens per block, ``user_message``, ``total``)
  and ``dropped`` (lines left out per block) for the turn's log line and metrics.

Templates are package data read with :mod:`importlib.resources`
(``src/llm_orchestrator/prompts/*.txt``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import Any

from llm_orchestrator.budget_settings import ContextPackSettings
from llm_orchestrator.models import ContextPack, Intent, MoodFrame, RecentMessage
from llm_orchestrator.response_description import describe_item, recognition_matches

__all__ = [
    "BLOCK_ORDER",
    "SHRINK_ORDER",
    "PromptBudgets",
    "RenderedPrompt",
    "build_messages",
    "build_system_prompt",
    "directive_text",
    "estimate_tokens",
    "load_template",
    "render",
]

BLOCK_ORDER = (
    "system_prompt",
    "persona_directive",
    "user_knowledge",
    "episodes",
    "recent_messages",
    "mood",
    "context",
    "referenced_artifact",
    "stylist_result",
    "recognition_result",
    "catalog",
)
SHRINK_ORDER = (
    "catalog",
    "recognition_result",
    "stylist_result",
    "context",
    "episodes",
    "user_knowledge",
    "recent_messages",
)
_TEMPLATES = {"fashion": "fashion.txt", "navigation": "navigation.txt"}
_ELLIPSIS = "…"


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text``: ceil(UTF-8 bytes / 4)."""
    return math.ceil(len(text.encode("utf-8")) / 4)


@dataclass(frozen=True, slots=True)
class PromptBudgets:
    """Token budget per block (estimated tokens)."""

    system_prompt: int = 700
    persona_directive: int = 700
    user_knowledge: int = 300
    episodes: int = 300
    recent_messages: int = 1500
    mood: int = 60
    context: int = 400
    referenced_artifact: int = 250
    catalog: int = 600
    stylist_result: int = 600
    recognition_result: int = 400
    total: int = 6000

    @classmethod
    def from_settings(cls, settings: ContextPackSettings) -> PromptBudgets:
        return cls(**{f.name: getattr(settings, f"budget_{f.name}_tokens") for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    system: str
    #: the chat turns after the system message: ``[{"role": "user", "content": message}]``
    messages: list[dict[str, str]]
    block_tokens: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.block_tokens.get("total", 0)


@cache
def load_template(name: str) -> str:
    """A prompt template (``prompts/<name>``) from the package data."""
    return resources.files("llm_orchestrator").joinpath("prompts", name).read_text("utf-8").strip()


def directive_text(directive: object) -> str | None:
    """persona_directive as text: its ``text`` (the Persona Agent's rendering), or a plain string."""
    if isinstance(directive, str):
        return directive.strip() or None
    if isinstance(directive, Mapping):
        text = directive.get("text")
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


# --- fitting ---------------------------------------------------------------------------------------


def _cut_to(text: str, max_tokens: int) -> str:
    room = max_tokens * 4 - len(_ELLIPSIS.encode())
    if room <= 0:
        return ""
    raw = text.encode("utf-8")
    if len(raw) <= max_tokens * 4:
        return text
    return raw[:room].decode("utf-8", errors="ignore").rstrip() + _ELLIPSIS


@dataclass(slots=True)
class _Block:
    header: str
    units: list[str]
    keep_tail: bool = False


def _fit(block: _Block, budget: int) -> tuple[str, int]:
    """(text, lines dropped) of ``block`` within ``budget`` tokens."""
    units = block.units
    if not units:
        return "", 0
    head_cost = estimate_tokens(block.header) + 1 if block.header else 0
    if budget <= head_cost:
        return "", len(units)
    order = list(range(len(units) - 1, -1, -1)) if block.keep_tail else list(range(len(units)))
    chosen: list[int] = []
    used = head_cost
    texts = list(units)
    for i in order:
        cost = estimate_tokens(texts[i]) + 1
        if used + cost > budget:
            break
        chosen.append(i)
        used += cost
    if not chosen:
        first = order[0]
        texts[first] = _cut_to(texts[first], budget - head_cost - 1)
        if not texts[first]:
            return "", len(units)
        chosen = [first]
    chosen.sort()
    body = "\n".join(texts[i] for i in chosen)
    return (f"{block.header}\n{body}" if block.header else body), len(units) - len(chosen)


# --- blocks ----------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _mood_line(mood: MoodFrame) -> str:
    v, a = mood.emotion.valence, mood.emotion.arousal
    tone = "позитивное" if v >= 0.6 else "негативное" if v <= 0.4 else "нейтральное"
    energy = "высокая" if a >= 0.65 else "низкая" if a < 0.35 else "средняя"
    parts = [tone, f"энергия {energy}", f"valence {v:.1f}"]
    s = mood.signals
    if s.frustration >= 0.5:
        parts.append(f"раздражение {s.frustration:.1f}")
    if s.fatigue >= 0.6:
        parts.append(f"усталость {s.fatigue:.1f}")
    if s.urgency >= 0.6:
        parts.append("спешит")
    if mood.topic.action not in ("continue", ""):
        parts.append(f"действие: {mood.topic.action}")
    return f"[Mood: {', '.join(parts)}]"


def _get(d: object, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _context_lines(frame: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    loc = _get(frame, "location") or {}
    place = [str(x) for x in (_get(loc, "mall_name") or _get(loc, "mall_id"),) if x]
    if _get(loc, "floor") is not None:
        place.append(f"{_get(loc, 'floor')} этаж")
    if _get(loc, "near_store"):
        place.append(f"рядом с {_get(loc, 'near_store')}")
    if place:
        lines.append("Локация: " + ", ".join(place))
    weather = _get(frame, "environment", "weather") or {}
    w = []
    if isinstance(_get(weather, "temp_c"), int | float):
        w.append(f"{_get(weather, 'temp_c'):+g}°C")
    if _get(weather, "condition"):
        w.append(str(_get(weather, "condition")))
    if _get(weather, "sunset"):
        w.append(f"закат {_get(weather, 'sunset')}")
    if w:
        lines.append("Погода: " + ", ".join(w))
    tc = _get(frame, "environment", "time_context") or {}
    t = [str(x) for x in (_get(tc, "day_of_week"), _get(tc, "part_of_day")) if x]
    closes = _get(tc, "mall_closes_in_hours")
    if isinstance(closes, int | float):
        t.append(f"ТЦ закрывается через {closes:g} ч")
    if t:
        lines.append("Время: " + ", ".join(t))
    cultural = _get(frame, "cultural") or {}
    c = []
    if _get(cultural, "active_period"):
        c.append(str(_get(cultural, "active_period")))
    for key, label in (("iftar_time", "ифтар"), ("next_meal_break", "перерыв")):
        if _get(cultural, key):
            c.append(f"{label} {_get(cultural, key)}")
    if c:
        lines.append("Культура: " + ", ".join(c))
    opportunities = _get(frame, "opportunities")
    if isinstance(opportunities, list) and opportunities:
        lines.append("Возможности:")
        for op in opportunities:
            if not isinstance(op, Mapping):
                continue
            what = " ".join(str(op[k]) for k in ("title", "discount") if op.get(k))
            why = f" ({op['relevance_reason']})" if op.get("relevance_reason") else ""
            lines.append(f"  - {op.get('store') or 'ТЦ'}: {what or op.get('type') or ''}{why}".rstrip(": "))
    return [_one_line(x) if not x.startswith("  - ") else "  - " + _one_line(x[4:]) for x in lines]


def _speaker(m: RecentMessage, user_name: str) -> str | None:
    return {"user": user_name, "assistant": "UNDE"}.get(m.role)


def _items(result: object, keys: tuple[str, ...]) -> list[str]:
    raw: object = result
    if isinstance(result, Mapping):
        raw = next((result[k] for k in keys if isinstance(result.get(k), list)), [])
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        line = describe_item(item)
        if line is None and isinstance(item, Mapping):
            line = ", ".join(f"{k}: {v}" for k, v in item.items() if isinstance(v, str | int | float))
        if line:
            out.append("- " + _one_line(line))
    return out


def _recognition_items(result: Mapping[str, Any]) -> list[str]:
    return _items(recognition_matches(result), ())


def _blocks(pack: ContextPack, intent: Intent | None) -> dict[str, _Block]:
    name = pack.user_display_name or "Юзер"
    template = load_template("base.txt")
    extra = _TEMPLATES.get(intent.type) if intent is not None else None
    if extra:
        template += "\n" + load_template(extra)
    recent = []
    for m in pack.recent_messages:
        who = _speaker(m, name)
        if who is not None and m.content.strip():
            recent.append(f'{who}: "{_one_line(m.content)}"')
    return {
        "system_prompt": _Block("[System Prompt]", template.splitlines()),
        "persona_directive": _Block(
            "[Persona Directive]", pack.persona_directive.splitlines() if pack.persona_directive else []
        ),
        "user_knowledge": _Block(
            "[User Knowledge — extracted facts]", [_one_line(x) for x in pack.user_knowledge if x.strip()]
        ),
        "episodes": _Block(
            "[Episode Cards — precomputed snippets]",
            [f"- {_one_line(e.episode_card)}" for e in pack.episodes if e.episode_card.strip()],
        ),
        "recent_messages": _Block("[Последние сообщения]", recent, keep_tail=True),
        "mood": _Block("", [_mood_line(pack.mood_frame)] if pack.mood_frame is not None else []),
        "context": _Block(
            "[Context — мир вокруг]", _context_lines(pack.context_frame) if pack.context_frame else []
        ),
        "referenced_artifact": _Block(
            "[Referenced Artifact — юзер реагирует на это]",
            [_one_line(pack.referenced_artifact.response_description)] if pack.referenced_artifact else [],
        ),
        "stylist_result": _Block(
            "[Stylist Result]",
            _items(pack.stylist_result, ("items", "recommendations", "results"))
            if pack.stylist_result
            else [],
        ),
        "recognition_result": _Block(
            "[Recognition Result]",
            _recognition_items(pack.recognition_result) if pack.recognition_result else [],
        ),
        "catalog": _Block("[Catalog]", _items(pack.catalog, ())),
    }


def _budgets(source: ContextPackSettings | PromptBudgets | None) -> PromptBudgets:
    if source is None:
        return PromptBudgets()
    if isinstance(source, PromptBudgets):
        return source
    return PromptBudgets.from_settings(source)


def _render_system(
    pack: ContextPack, intent: Intent | None, budgets: PromptBudgets
) -> tuple[str, dict[str, int], dict[str, int]]:
    blocks = _blocks(pack, intent)
    texts: dict[str, str] = {}
    dropped: dict[str, int] = {}
    for name in BLOCK_ORDER:
        texts[name], dropped[name] = _fit(blocks[name], int(getattr(budgets, name)))

    def joined() -> str:
        return "\n\n".join(texts[n] for n in BLOCK_ORDER if texts[n])

    system = joined()
    total = estimate_tokens(system)
    for name in SHRINK_ORDER:
        if total <= budgets.total:
            break
        if not texts[name]:
            continue
        current = estimate_tokens(texts[name])
        texts[name], dropped[name] = _fit(blocks[name], max(0, current - (total - budgets.total)))
        system = joined()
        total = estimate_tokens(system)
    tokens = {name: estimate_tokens(texts[name]) if texts[name] else 0 for name in BLOCK_ORDER}
    tokens["total"] = total
    return system, tokens, {k: v for k, v in dropped.items() if v}


def build_system_prompt(
    pack: ContextPack,
    intent: Intent | None = None,
    budgets: ContextPackSettings | PromptBudgets | None = None,
) -> str:
    """The system message (template + blocks within the budgets)."""
    return _render_system(pack, intent, _budgets(budgets))[0]


def build_messages(
    pack: ContextPack,
    message: str,
    intent: Intent | None = None,
    budgets: ContextPackSettings | PromptBudgets | None = None,
) -> RenderedPrompt:
    """The system message, the chat turns (``[{"role": "user", "content": message}]``) and the
    estimated tokens per block."""
    system, tokens, dropped = _render_system(pack, intent, _budgets(budgets))
    tokens["user_message"] = estimate_tokens(message)
    return RenderedPrompt(
        system=system, messages=[{"role": "user", "content": message}], block_tokens=tokens, dropped=dropped
    )


def render(
    pack: ContextPack,
    intent: Intent | None,
    message: str,
    budgets: ContextPackSettings | PromptBudgets | None = None,
) -> RenderedPrompt:
    """:func:`build_messages` with the orchestrator's argument order."""
    return build_messages(pack, message, intent, budgets)
