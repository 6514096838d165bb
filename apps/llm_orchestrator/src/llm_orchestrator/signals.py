# ruff: noqa: RUF001, RUF002  (Russian words are Cyrillic on purpose)
"""Behavioural signals for the Persona Agent's feedback loop, and the response meta of an answer.

A signal describes one exchange: UNDE's answer (``assistant_text`` + its ``previous_response_meta``)
and the user's next message (``user_message``, with its ``mood_frame``). Only the persona contract's
14 types are emitted (:data:`SIGNAL_TYPES`, a copy of ``persona_contract.signals.SIGNAL_TYPES`` — this
app does not depend on the persona package; a test keeps them equal). Each comes once, with
``signal_data = {"trigger": <the matched keyword>, "strength": 0..1}`` — never the user's text.

Rules (Russian + English keywords):

- humour (only when the answer had humour): laughter (ха-ха, лол, 😂, haha, lol) → humor_positive;
  "не смешно", "без шуток", "not funny", "stop joking" → humor_rejected; a reply with neither →
  humor_ignored at strength 0.5 (conservative: it wins a conflict, so it is kept weak);
- cultural reference (only when the answer had one): "интересно", "не знала", "interesting" →
  cultural_ref_positive; "не надо про", "не интересует", "not interested", "irrelevant" →
  cultural_ref_rejected;
- length: "короче", "слишком длинно", "too long", "tl;dr" → response_too_long; "подробнее",
  "расскажи больше", "tell me more", "more details" → response_too_short;
- emoji_mirrored: the answer had emoji and the reply has emoji too;
- formality: "давай на ты", "можно на ты", "no need to be formal" → formality_down; "давайте на
  вы", "не фамильярничай", "be more professional" → formality_up; a reply addressing UNDE with
  a capitalised "Вы/Вас/Вам" inside a sentence → formality_up at strength 0.5;
- memory (only when the answer referred to memory): "ты помнишь", "точно", "you remembered" →
  memory_ref_positive; "откуда ты знаешь", "жутко", "не напоминай", "creepy", "how do you know" →
  memory_ref_uncomfortable (this one also without a memory reference: the user says it);
- compliment (only when the answer had one): "не льсти", "хватит комплиментов", "don't flatter",
  "stop complimenting" → compliment_rejected;
- engagement_positive: thanks / delight words (спасибо, супер, класс, обожаю, thanks, love it,
  perfect) or a mood valence ≥ 0.75, unless a rejection above was detected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from llm_orchestrator.models import Intent, MoodFrame
from llm_orchestrator.text_rules import Lexicon, has_emoji, tokens

__all__ = ["SIGNAL_TYPES", "detect_behavioral_signals", "response_meta"]

SIGNAL_TYPES: Final[tuple[str, ...]] = (
    "humor_positive",
    "humor_ignored",
    "humor_rejected",
    "cultural_ref_positive",
    "cultural_ref_rejected",
    "response_too_long",
    "response_too_short",
    "emoji_mirrored",
    "formality_up",
    "formality_down",
    "memory_ref_positive",
    "memory_ref_uncomfortable",
    "compliment_rejected",
    "engagement_positive",
)

LAUGH = Lexicon.of(
    "ха",
    "хаха*",
    "ахах*",
    "хех*",
    "лол",
    "ржу",
    "смешно",
    "угар",
    "haha*",
    "lol",
    "lmao",
    "rofl",
    "funny",
    "hehe",
)
LAUGH_EMOJI = re.compile("[\U0001f602\U0001f923\U0001f606\U0001f605\U0001f604\U0001f601\U0001f639]")
HUMOR_REJECT = Lexicon.of(
    "не смешно", "без шуток", "хватит шутить", "не шути", "not funny", "stop joking", "no jokes", "dont joke"
)
CULTURE_POSITIVE = Lexicon.of(
    "интересно", "не знала", "не знал", "познавательно", "interesting", "didnt know"
)
CULTURE_REJECT = Lexicon.of(
    "не надо про",
    "не интересует",
    "неинтересно",
    "при чем тут",
    "not interested",
    "irrelevant",
    "dont care about",
    "whatever",
)
TOO_LONG = Lexicon.of(
    "короче",
    "слишком длинно",
    "много текста",
    "покороче",
    "в двух словах",
    "tldr",
    "tl dr",
    "too long",
    "shorter please",
    "keep it short",
    "too much text",
)
TOO_SHORT = Lexicon.of(
    "подробнее",
    "расскажи больше",
    "расскажи подробнее",
    "а еще",
    "поподробнее",
    "tell me more",
    "more details",
    "elaborate",
    "go on",
    "more info",
)
FORMAL_DOWN = Lexicon.of(
    "давай на ты", "можно на ты", "на ты", "no need to be formal", "be casual", "dont be so formal"
)
FORMAL_UP = Lexicon.of(
    "давайте на вы",
    "не фамильярничай",
    "будьте вежливее",
    "be more professional",
    "dont call me",
    "too familiar",
)
MEMORY_POSITIVE = Lexicon.of(
    "ты помнишь", "помнишь", "точно", "именно", "you remembered", "exactly", "good memory"
)
MEMORY_UNCOMFORTABLE = Lexicon.of(
    "откуда ты знаешь",
    "жутко",
    "стремно",
    "не напоминай",
    "не вспоминай",
    "забудь об этом",
    "creepy",
    "how do you know",
    "dont remind me",
    "stop bringing",
    "thats weird",
)
COMPLIMENT_REJECT = Lexicon.of(
    "не льсти",
    "хватит комплиментов",
    "без комплиментов",
    "dont flatter",
    "stop complimenting",
    "no compliments",
    "save the compliments",
)
ENGAGED = Lexicon.of(
    "спасибо",
    "супер",
    "класс",
    "классно",
    "круто",
    "обожаю",
    "отлично",
    "идеально",
    "ура",
    "thanks",
    "thank you",
    "love it",
    "perfect",
    "great",
    "awesome",
    "amazing",
)
_FORMAL_VY = re.compile(r"(?<=[\w,] )(?:Вы|Вас|Вам|Вами|Ваш\w*)\b")

# response meta
HUMOR = Lexicon.of("шучу", "шутка", "хаха*", "ахах*", "joke", "kidding", "haha*", "lol")
COMPLIMENT = Lexicon.of(
    "тебе идет",
    "тебе очень идет",
    "отлично выглядишь",
    "прекрасно выглядишь",
    "у тебя отличный вкус",
    "отличный вкус",
    "красотка",
    "you look great",
    "you look amazing",
    "suits you",
    "great taste",
    "you look stunning",
    "gorgeous",
)
CULTURAL = Lexicon.of(
    "рамадан*",
    "ифтар*",
    "ид",
    "курбан*",
    "дивали",
    "национальный день",
    "ramadan",
    "iftar",
    "eid",
    "diwali",
    "national day",
    "suhoor",
    "сухур",
)
_OPENER_WORDS = re.compile(r"\w+")


def _meta_of(previous: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> Mapping[str, Any]:
    if previous is None:
        return {}
    if isinstance(previous, Mapping):
        return previous
    return previous[-1] if previous else {}


def detect_behavioral_signals(
    user_message: str,
    assistant_text: str | None,
    mood_frame: MoodFrame | None,
    previous_response_meta: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> list[tuple[str, dict[str, Any]]]:
    """The signals of one exchange (see the module docstring). ``previous_response_meta``: the
    answer's meta (a dict), or the list of earlier metas, most recent last."""
    meta = _meta_of(previous_response_meta)
    toks = tokens(user_message[:2000])
    found: dict[str, dict[str, Any]] = {}

    def emit(signal: str, trigger: str, strength: float = 1.0) -> None:
        found.setdefault(signal, {"trigger": trigger, "strength": strength})

    rejected = False
    if meta.get("had_humor"):
        if (hit := HUMOR_REJECT.first(toks)) is not None:
            emit("humor_rejected", hit)
            rejected = True
        elif (hit := LAUGH.first(toks)) is not None or LAUGH_EMOJI.search(user_message):
            emit("humor_positive", hit or "emoji")
        else:
            emit("humor_ignored", "no_reaction", 0.5)
    if meta.get("had_cultural_ref"):
        if (hit := CULTURE_REJECT.first(toks)) is not None:
            emit("cultural_ref_rejected", hit)
            rejected = True
        elif (hit := CULTURE_POSITIVE.first(toks)) is not None:
            emit("cultural_ref_positive", hit)
    if (hit := TOO_LONG.first(toks)) is not None:
        emit("response_too_long", hit)
    elif (hit := TOO_SHORT.first(toks)) is not None:
        emit("response_too_short", hit)
    if assistant_text and has_emoji(assistant_text) and has_emoji(user_message):
        emit("emoji_mirrored", "emoji")
    if (hit := FORMAL_DOWN.first(toks)) is not None:
        emit("formality_down", hit)
    elif (hit := FORMAL_UP.first(toks)) is not None:
        emit("formality_up", hit)
    elif _FORMAL_VY.search(user_message[:2000]):
        emit("formality_up", "vy", 0.5)
    if (hit := MEMORY_UNCOMFORTABLE.first(toks)) is not None:
        emit("memory_ref_uncomfortable", hit)
        rejected = True
    elif meta.get("had_memory_ref") and (hit := MEMORY_POSITIVE.first(toks)) is not None:
        emit("memory_ref_positive", hit)
    if meta.get("had_compliment") and (hit := COMPLIMENT_REJECT.first(toks)) is not None:
        emit("compliment_rejected", hit)
        rejected = True
    if not rejected:
        if (hit := ENGAGED.first(toks)) is not None:
            emit("engagement_positive", hit)
        elif mood_frame is not None and mood_frame.emotion.valence >= 0.75:
            emit("engagement_positive", "mood", 0.5)
    return [(name, found[name]) for name in SIGNAL_TYPES if name in found]


def response_meta(
    assistant_text: str, intent: Intent | str | None, had_memory: bool, tone_mode: str | None = None
) -> dict[str, Any]:
    """The persona agent's ResponseMeta of one answer: the devices it used and how it opened
    (its first two words, lower-cased: the agent bans an opener used twice in a row)."""
    toks = tokens(assistant_text[:4000])
    words = _OPENER_WORDS.findall(assistant_text[:200].lower())
    return {
        "tone_mode": tone_mode,
        "had_humor": HUMOR.first(toks) is not None or LAUGH_EMOJI.search(assistant_text) is not None,
        "had_question": "?" in assistant_text,
        "had_compliment": COMPLIMENT.first(toks) is not None,
        "had_cultural_ref": CULTURAL.first(toks) is not None,
        "had_memory_ref": bool(had_memory),
        "opener": " ".join(words[:2]) or None,
    }
