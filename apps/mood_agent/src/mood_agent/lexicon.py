# ruff: noqa: RUF001  (Russian words are Cyrillic on purpose)
"""Local lexicon/rule classifier (Russian + English): the answer when the LLMs are slow or down,
and the whole classifier in ``signal`` mode. Deterministic, microseconds per message.

Scoring: sentiment words (±1, negated by a negation within the two previous tokens, x1.5 after an
intensifier), emoji, exclamation marks and CAPS (arousal), marker phrases for frustration,
urgency, fatigue, uncertainty and decisiveness, keyword topics and thread-break phrases.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["TOPICS", "Classification", "classify"]


@dataclass(frozen=True, slots=True)
class Classification:
    valence: float
    arousal: float
    dominance: float
    frustration: float
    urgency: float
    confidence: float
    fatigue: float
    topic: str | None
    thread_break: bool


POSITIVE = frozenset(
    [
        "love",
        "loved",
        "lovely",
        "like",
        "liked",
        "great",
        "perfect",
        "amazing",
        "beautiful",
        "nice",
        "good",
        "happy",
        "excited",
        "awesome",
        "cool",
        "gorgeous",
        "thanks",
        "thank",
        "wonderful",
        "fantastic",
        "cute",
        "stunning",
        "fabulous",
        "glad",
        "yes",
        "yay",
        "best",
        "elegant",
        "comfy",
        "comfortable",
        "люблю",
        "нравится",
        "понравилось",
        "понравился",
        "отлично",
        "класс",
        "классно",
        "супер",
        "круто",
        "красиво",
        "красивый",
        "красивая",
        "прекрасно",
        "спасибо",
        "идеально",
        "шикарно",
        "обожаю",
        "хорошо",
        "мило",
        "восторг",
        "здорово",
        "рада",
        "рад",
        "удобно",
        "стильно",
        "да",
    ]
)
NEGATIVE = frozenset(
    [
        "hate",
        "hated",
        "ugly",
        "bad",
        "terrible",
        "awful",
        "annoying",
        "annoyed",
        "disappointed",
        "disappointing",
        "sad",
        "boring",
        "worst",
        "wrong",
        "horrible",
        "upset",
        "angry",
        "frustrated",
        "stupid",
        "useless",
        "expensive",
        "cheap-looking",
        "meh",
        "sucks",
        "tight",
        "itchy",
        "ненавижу",
        "ужасно",
        "ужасный",
        "плохо",
        "плохой",
        "некрасиво",
        "отстой",
        "бесит",
        "раздражает",
        "грустно",
        "скучно",
        "кошмар",
        "разочарована",
        "разочарован",
        "злюсь",
        "дорого",
        "неудобно",
        "жмет",
        "жмёт",
        "колется",
        "убого",
    ]
)
NEGATIONS = frozenset(
    [
        "not",
        "no",
        "don't",
        "dont",
        "never",
        "isn't",
        "isnt",
        "doesn't",
        "doesnt",
        "не",
        "нет",
        "ни",
        "никогда",
    ]
)
INTENSIFIERS = frozenset(
    [
        "very",
        "so",
        "really",
        "super",
        "totally",
        "extremely",
        "очень",
        "так",
        "совсем",
        "супер",
        "прям",
        "слишком",
    ]
)
POS_EMOJI = "😍❤😊👍🔥🥰😀😁🤩💕✨"
NEG_EMOJI = "😡😤😢😞👎😠😭🙄😩"

FRUSTRATION = (
    "again",
    "still not",
    "already told",
    "already said",
    "doesn't work",
    "not what i",
    "ugh",
    "seriously",
    "why can't",
    "how many times",
    "useless",
    "annoying",
    "опять",
    "снова",
    "уже говорила",
    "уже говорил",
    "не работает",
    "не то",
    "сколько можно",
    "бесит",
    "достало",
    "ну почему",
    "блин",
    "раздражает",
)
URGENCY = (
    "now",
    "quick",
    "quickly",
    "asap",
    "hurry",
    "urgent",
    "today",
    "tonight",
    "closing",
    "right away",
    "in an hour",
    "minutes",
    "срочно",
    "быстро",
    "скорее",
    "сейчас",
    "сегодня",
    "закрывается",
    "через час",
    "минут",
    "поскорее",
    "прямо сейчас",
)
FATIGUE = (
    "tired",
    "exhausted",
    "long day",
    "sleepy",
    "can't anymore",
    "whatever",
    "worn out",
    "устала",
    "устал",
    "нет сил",
    "вымотана",
    "вымотан",
    "спать",
    "надоело",
    "всё равно",
    "все равно",
)
UNCERTAIN = (
    "maybe",
    "not sure",
    "don't know",
    "dont know",
    "idk",
    "perhaps",
    "unsure",
    "hmm",
    "confused",
    "or ",
    "может",
    "наверное",
    "не знаю",
    "не уверена",
    "не уверен",
    "сомневаюсь",
    "хз",
    "или ",
)
DECISIVE = (
    "i want",
    "show me",
    "give me",
    "i need",
    "i'll take",
    "definitely",
    "хочу",
    "покажи",
    "дай",
    "нужно",
    "беру",
    "точно",
    "обязательно",
)
THREAD_BREAK = (
    "never mind",
    "nevermind",
    "forget it",
    "something else",
    "different question",
    "another question",
    "change the subject",
    "забудь",
    "неважно",
    "другой вопрос",
    "давай о другом",
    "о другом",
    "проехали",
)
TOPICS: dict[str, tuple[str, ...]] = {
    "shoes": (
        "shoe",
        "sneaker",
        "boot",
        "heel",
        "sandal",
        "обув",
        "кроссов",
        "ботин",
        "туфл",
        "сапог",
        "кед",
    ),
    "bags_accessories": (
        "bag",
        "belt",
        "scarf",
        "jewel",
        "earring",
        "сумк",
        "ремень",
        "шарф",
        "серьг",
        "украш",
    ),
    "size_fit": ("size", "fit", "too small", "too big", "tight", "размер", "сидит", "маломер", "большемер"),
    "price": (
        "price",
        "cost",
        "expensive",
        "cheap",
        "budget",
        "discount",
        "sale",
        "цен",
        "стоит",
        "дорог",
        "дешев",
        "бюджет",
        "скидк",
        "распродаж",
    ),
    "gift": ("gift", "present", "birthday", "подар", "день рождени"),
    "food": (
        "eat",
        "food",
        "lunch",
        "dinner",
        "coffee",
        "restaurant",
        "hungry",
        "есть хочу",
        "обед",
        "ужин",
        "кофе",
        "ресторан",
        "голод",
    ),
    "cinema": ("movie", "film", "cinema", "кино", "фильм", "сеанс"),
    "weather": ("weather", "hot", "cold", "rain", "погод", "жарк", "холод", "дожд"),
    "clothes": (
        "dress",
        "jeans",
        "jacket",
        "shirt",
        "top",
        "skirt",
        "coat",
        "outfit",
        "look",
        "trousers",
        "плать",
        "джинс",
        "куртк",
        "рубашк",
        "юбк",
        "пальто",
        "образ",
        "лук",
        "брюк",
        "топ",
        "костюм",
    ),
}
_TOKEN = re.compile(r"[\w'ёЁ-]+", re.UNICODE)


def _clip(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 2)


_COMPILED: dict[tuple[str, ...], re.Pattern[str]] = {}


def _hits(text: str, phrases: tuple[str, ...]) -> int:
    """How many distinct ``phrases`` occur in ``text``, each starting at a word boundary (a phrase
    is also a stem: ``обув`` matches ``обувь``); longer phrases win over their prefixes."""
    rx = _COMPILED.get(phrases)
    if rx is None:
        ordered = sorted(phrases, key=len, reverse=True)
        rx = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in ordered) + ")")
        _COMPILED[phrases] = rx
    return len({m.group(0) for m in rx.finditer(text)})


def classify(text: str) -> Classification:
    raw = text.strip()
    low = raw.lower()
    tokens = _TOKEN.findall(low)
    score = 0.0
    sentiment_words = 0
    for i, tok in enumerate(tokens):
        polarity = 1.0 if tok in POSITIVE else -1.0 if tok in NEGATIVE else 0.0
        if not polarity:
            continue
        sentiment_words += 1
        window = tokens[max(0, i - 2) : i]
        if any(w in NEGATIONS for w in window):
            polarity = -polarity * 0.8
        if any(w in INTENSIFIERS for w in window):
            polarity *= 1.5
        score += polarity
    score += 0.8 * sum(raw.count(e) for e in POS_EMOJI) - 0.8 * sum(raw.count(e) for e in NEG_EMOJI)
    frustration_hits = _hits(low, FRUSTRATION)
    score -= 0.5 * frustration_hits

    letters = [c for c in raw if c.isalpha()]
    caps = sum(1 for c in letters if c.isupper()) / len(letters) if len(letters) >= 6 else 0.0
    exclaim = min(raw.count("!"), 5)
    questions = raw.count("?")

    valence = 0.5 + 0.5 * math.tanh(score / 2.0)
    arousal = 0.3 + 0.08 * exclaim + 0.4 * caps + 0.05 * min(sentiment_words, 4) + 0.1 * frustration_hits
    urgency = 0.15 * _hits(low, URGENCY) * 2
    fatigue = 0.45 * min(2, _hits(low, FATIGUE))
    uncertain = min(2, _hits(low, UNCERTAIN) + (1 if questions >= 2 else 0))
    decisive = _hits(low, DECISIVE)
    frustration = 0.3 * frustration_hits + (0.25 if score < -1 and (exclaim or caps > 0.5) else 0.0)
    frustration += 0.15 if valence < 0.3 else 0.0
    confidence = 0.65 - 0.2 * uncertain + 0.15 * decisive
    dominance = 0.5 + 0.15 * decisive - 0.12 * uncertain

    topic_scores = {name: _hits(low, words) for name, words in TOPICS.items()}
    best = max(topic_scores, key=lambda k: topic_scores[k])
    topic = best if topic_scores[best] > 0 else None
    return Classification(
        valence=_clip(valence),
        arousal=_clip(arousal),
        dominance=_clip(dominance),
        frustration=_clip(frustration),
        urgency=_clip(urgency),
        confidence=_clip(confidence),
        fatigue=_clip(fatigue),
        topic=topic,
        thread_break=_hits(low, THREAD_BREAK) > 0,
    )
