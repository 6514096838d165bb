# ruff: noqa: RUF001, RUF002, SIM905  (Russian words are Cyrillic on purpose; word lists as strings)
"""Memory rules of the dialogue (spec 02 §13/§14): salience, classification, episode cards and the
three application-layer filters on hybrid-search results (diversity, emotional, density cap).
Similarity filtering is done in SQL (``SIMILARITY_THRESHOLD`` in hybrid_search.sql).

Decisions (the spec names the rules, these are their exact forms):

- **salience_check**: a message is embeddable when its role is ``user`` and, with emoji, symbols and
  punctuation removed and whitespace collapsed, it is longer than 15 characters ("ок 👍👍👍👍👍👍👍👍"
  is not; "[deleted]" is not).
- **classify_memory**: keyword families per type (Russian stems + English words, the first 2,000
  characters): the type with the most hits wins, ties in the order fact > preference > event >
  emotion; no hit → ``general``. Confidence: 0.6 for a typed memory, 0.5 for general; +0.1 per
  intensifier (очень, обожаю, всегда, никогда, точно, really, always, never, definitely, …; at most
  +0.3; one "!" +0.05), −0.1 per softener (наверное, может, кажется, вроде, иногда, maybe,
  probably, kind of, I guess, …; at most −0.3), −0.1 for a question; clamped to 0.1..0.95.
- **memory_snippet**: the user's own most telling sentence (the first one that classifies as
  non-general, else the first that is not a bare greeting), emoji and leading fillers removed, the
  leading first-person subject rewritten to the third person where a table knows the verb (я люблю →
  любит, я не ем → не ест, I love → loves, I'm → is, my size → size; Russian past tense keeps its
  form: я устала → устала), cut to 100 characters at a word boundary with "…". No LLM: the card
  is ready in microseconds at ingestion.
- **diversity_filter**: at most 3 episodes per calendar day, the day taken in the users' local time
  zone (``DIVERSITY_TIMEZONE``, Asia/Dubai); input order (best score first) is kept.
- **emotional_filter**: the mood is *negative* when valence ≤ 0.3 or frustration ≥ 0.5 (the
  persona agent's "in distress" thresholds) or the mood agent's topic action is ``defuse``. On a
  negative mood an episode is excluded when it is painful: its card matches the painful lexicon
  (break-ups, divorce, death, illness, job loss, weight and body shame, failures, debt) whatever
  its type, or it is an ``emotion`` memory with a negative-emotion word (tired, sad, angry, stressed,
  …). On a neutral or positive mood nothing is excluded. A missing mood frame is neutral.
- **density_cap**: at most ``max_per_response`` (3) episodes per answer; memories are used this
  turn only if afterwards every rolling window of ``window`` (10) answers stays at or below
  ``max_density`` (30 %): ``(memory answers among the previous window−1) + 1 ≤ max_density × window``.
  Answers before the first count as memory-free (a fixed denominator), so a new user may get
  memories in answers 1–3 and then not again until one leaves the window. The function says whether
  this answer uses memory; the caller records that flag with the reply.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import tzinfo
from zoneinfo import ZoneInfo

from llm_orchestrator.models import Episode, MemoryType, MoodFrame
from llm_orchestrator.text_rules import EMOJI, Lexicon, Tokens, tokens

__all__ = [
    "CLASSIFY_MAX_CHARS",
    "SNIPPET_MAX_CHARS",
    "classify_memory",
    "density_cap",
    "diversity_filter",
    "emotional_filter",
    "is_negative_mood",
    "is_painful",
    "memory_snippet",
    "normalize_message",
    "salience_check",
]

SALIENCE_MIN_CHARS = 15
CLASSIFY_MAX_CHARS = 2000
SNIPPET_MAX_CHARS = 100
DUBAI = ZoneInfo("Asia/Dubai")

_NOT_WORD = re.compile(r"[^\w\s]+")
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def normalize_message(text: str, max_chars: int = 4000) -> str:
    """The user's message as it is stored and sent: NUL and other control characters (PostgreSQL
    text refuses NUL) replaced by spaces except newline and tab, surrounding whitespace stripped;
    longer than ``max_chars`` → cut at the last whitespace of the final 10 % (else hard) and "…"
    appended. ValueError for an empty or whitespace-only message."""
    clean = _CONTROL.sub(" ", text).strip()
    if not clean:
        raise ValueError("message is empty")
    if len(clean) <= max_chars:
        return clean
    head = clean[: max_chars - 1]
    cut = max(head.rfind(" "), head.rfind("\n"))
    if cut >= max_chars - max_chars // 10:
        head = head[:cut]
    return head.rstrip() + "…"


def salience_check(text: str, role: str) -> bool:
    """True when the message is worth embedding (user role, > 15 characters of words)."""
    if role != "user":
        return False
    cleaned = _SPACES.sub(" ", _NOT_WORD.sub(" ", EMOJI.sub(" ", text))).strip()
    return len(cleaned) > SALIENCE_MIN_CHARS


_TYPES: dict[MemoryType, Lexicon] = {
    "fact": Lexicon.of(
        "меня зовут",
        "мое имя",
        "мой размер",
        "у меня аллергия",
        "не ем",
        "не пью",
        "работаю*",
        "живу",
        "учусь",
        "аллерги*",
        "размер*",
        "рост",
        "вешу",
        "вегетариан*",
        "веган*",
        "глютен*",
        "лактоз*",
        "замуж*",
        "женат*",
        "муж",
        "мужа",
        "жена",
        "парень",
        "парня",
        "девушк*",
        "дочь",
        "дочк*",
        "сын",
        "сына",
        "детей",
        "дети",
        "беремен*",
        "my name",
        "i work",
        "i live",
        "i dont eat",
        "i dont drink",
        "allergic",
        "allergy",
        "size",
        "vegan",
        "vegetarian",
        "gluten",
        "lactose",
        "married",
        "husband",
        "wife",
        "boyfriend",
        "girlfriend",
        "daughter",
        "son",
        "kids",
        "pregnant",
    ),
    "preference": Lexicon.of(
        "люблю",
        "любим*",
        "обожа*",
        "нравит*",
        "нравя*",
        "ненавиж*",
        "терпеть не могу",
        "предпочита*",
        "фанат*",
        "по душе",
        "не переношу",
        "love",
        "like",
        "likes",
        "prefer",
        "prefers",
        "hate",
        "favourite",
        "favorite",
        "fan of",
        "adore",
        "enjoy",
        "cant stand",
        "into",
    ),
    "event": Lexicon.of(
        "вчера",
        "позавчера",
        "завтра",
        "послезавтра",
        "в прошлый раз",
        "на прошлой неделе",
        "на следующей неделе",
        "в выходные",
        "свадьб*",
        "день рождения",
        "отпуск*",
        "поездк*",
        "путешеств*",
        "вечеринк*",
        "концерт*",
        "собеседован*",
        "ходил*",
        "сходил*",
        "съездил*",
        "свидани*",
        "выпускн*",
        "праздник*",
        "юбиле*",
        "годовщин*",
        "yesterday",
        "tomorrow",
        "tonight",
        "last time",
        "last week",
        "next week",
        "weekend",
        "wedding",
        "birthday",
        "trip",
        "vacation",
        "holiday",
        "party",
        "concert",
        "interview",
        "went",
        "graduation",
        "anniversary",
    ),
    "emotion": Lexicon.of(
        "устал*",
        "грус*",
        "печал*",
        "расстро*",
        "счастлив*",
        "рада",
        "рад",
        "бесит",
        "злюсь",
        "злая",
        "злой",
        "нервнича*",
        "пережива*",
        "тревож*",
        "боюсь",
        "страшн*",
        "одинок*",
        "скуча*",
        "обидн*",
        "обиде*",
        "плак*",
        "депресс*",
        "стресс*",
        "вымотал*",
        "выгорел*",
        "волнуюсь",
        "чувствую",
        "восторг*",
        "разочаров*",
        "tired",
        "exhausted",
        "sad",
        "upset",
        "happy",
        "angry",
        "annoyed",
        "anxious",
        "stressed",
        "lonely",
        "scared",
        "afraid",
        "depressed",
        "excited",
        "nervous",
        "worried",
        "frustrated",
        "feel",
        "feeling",
        "cried",
        "crying",
        "overwhelmed",
        "miserable",
        "burnt out",
        "burned out",
    ),
}
#: tie order: the longer-lasting memory types first
_TIE_ORDER: tuple[MemoryType, ...] = ("fact", "preference", "event", "emotion")

INTENSIFIERS = Lexicon.of(
    "очень",
    "сильно",
    "безумно",
    "обожаю",
    "всегда",
    "никогда",
    "точно",
    "определенно",
    "абсолютно",
    "совсем",
    "ужасно",
    "невероятно",
    "реально",
    "прям",
    "прямо",
    "супер",
    "жутко",
    "категорически",
    "очень сильно",
    "very",
    "really",
    "extremely",
    "absolutely",
    "definitely",
    "always",
    "never",
    "totally",
    "super",
    "incredibly",
    "seriously",
    "so much",
    "adore",
)
SOFTENERS = Lexicon.of(
    "наверное",
    "может",
    "возможно",
    "кажется",
    "вроде",
    "иногда",
    "немного",
    "чуть",
    "слегка",
    "пожалуй",
    "типа",
    "не уверена",
    "не уверен",
    "не знаю",
    "maybe",
    "perhaps",
    "probably",
    "sometimes",
    "kinda",
    "kind of",
    "sort of",
    "i guess",
    "i think",
    "not sure",
    "a bit",
    "slightly",
    "somewhat",
)


def _classify(toks: Tokens) -> tuple[MemoryType, int]:
    best: MemoryType = "general"
    best_hits = 0
    for name in _TIE_ORDER:
        hits = _TYPES[name].count(toks)
        if hits > best_hits:
            best, best_hits = name, hits
    return best, best_hits


def classify_memory(text: str) -> tuple[MemoryType, float]:
    """(memory_type, memory_confidence) of a user message (see the module docstring)."""
    head = text[:CLASSIFY_MAX_CHARS]
    toks = tokens(head)
    memory_type, _ = _classify(toks)
    confidence = 0.5 if memory_type == "general" else 0.6
    confidence += 0.1 * min(3, INTENSIFIERS.count(toks))
    confidence -= 0.1 * min(3, SOFTENERS.count(toks))
    if "!" in head:
        confidence += 0.05
    if "?" in head:
        confidence -= 0.1
    return memory_type, round(min(0.95, max(0.1, confidence)), 2)


# --- episode cards ---------------------------------------------------------------------------------

_GREETINGS = frozenset(
    "привет приветик здравствуй здравствуйте хай хей салам салют добрый день утро вечер доброе "
    "hi hello hey hiya yo morning evening good thanks спасибо ок окей ok okay".split()
)
_FILLERS = frozenset("ну короче кстати слушай смотри так вот и а блин so well btw anyway also and oh".split())
_RU_VERBS = {
    "люблю": "любит",
    "обожаю": "обожает",
    "ненавижу": "ненавидит",
    "ношу": "носит",
    "хочу": "хочет",
    "ищу": "ищет",
    "предпочитаю": "предпочитает",
    "работаю": "работает",
    "живу": "живёт",
    "экономлю": "экономит",
    "коплю": "копит",
    "собираюсь": "собирается",
    "иду": "идёт",
    "еду": "едет",
    "планирую": "планирует",
    "думаю": "думает",
    "ем": "ест",
    "пью": "пьёт",
    "боюсь": "боится",
    "мечтаю": "мечтает",
    "учусь": "учится",
    "занимаюсь": "занимается",
    "чувствую": "чувствует",
    "знаю": "знает",
    "выбираю": "выбирает",
    "покупаю": "покупает",
    "жду": "ждёт",
    "стесняюсь": "стесняется",
    "сплю": "спит",
    "могу": "может",
    "переживаю": "переживает",
    "нервничаю": "нервничает",
    "скучаю": "скучает",
    "волнуюсь": "волнуется",
    "терпеть": "терпеть",
}
_EN_VERBS = {
    "am": "is",
    "m": "is",
    "have": "has",
    "ve": "has",
    "do": "does",
    "dont": "doesn't",
    "go": "goes",
    "was": "was",
    "cant": "can't",
    "can": "can",
    "will": "will",
    "ll": "will",
    "d": "would",
    "would": "would",
    "should": "should",
    "could": "could",
    "wasnt": "wasn't",
    "didnt": "didn't",
}
_EN_PAST = frozenset(
    "went was had saw got bought felt did made took found came told said thought wore ate met tried".split()
)
_RU_DROP_LEADING = (("мне",), ("у", "меня"), ("мой",), ("моя",), ("мое",), ("моё",), ("мои",), ("my",))


def _bare(word: str) -> str:
    return word.strip(".,!?:;…\"'«»()—-").lower().replace("ё", "е")


_EN_ADVERBS = frozenset(
    [
        "really",
        "also",
        "just",
        "always",
        "never",
        "usually",
        "often",
        "still",
        "actually",
        "totally",
        "absolutely",
        "definitely",
        "kinda",
        "so",
        "truly",
        "sometimes",
        "mostly",
    ]
)


def _third_person(words: list[str]) -> list[str]:
    low = [_bare(w).replace("'", "").replace("\u2019", "") for w in words]
    for prefix in _RU_DROP_LEADING:
        if tuple(low[: len(prefix)]) == prefix and len(words) > len(prefix):
            return words[len(prefix) :]
    if low[:2] == ["меня", "зовут"]:
        return words[1:]
    if low and low[0] == "я" and len(words) > 1:
        rest = words[1:]
        i = 1 if _bare(rest[0]) == "не" and len(rest) > 1 else 0
        verb = _bare(rest[i])
        if verb in _RU_VERBS:
            rest[i] = _RU_VERBS[verb]
        return rest
    if low and low[0] in ("i", "im", "ive", "id", "ill") and len(words) > 1:
        first = words[0].replace("\u2019", "'")
        if low[0] != "i":  # I'm / I've / I'd / I'll
            tail = first.split("'", 1)[1].lower() if "'" in first else low[0][1:]
            return [_EN_VERBS.get(tail, tail), *words[1:]]
        rest = words[1:]
        i = 0
        while i < len(rest) - 1 and _bare(rest[i]) in _EN_ADVERBS:
            i += 1
        verb = _bare(rest[i]).replace("'", "")
        if verb in _EN_VERBS:
            rest[i] = _EN_VERBS[verb]
        elif verb.isalpha() and verb not in _EN_PAST and not verb.endswith("ed"):
            rest[i] = verb + ("es" if verb.endswith(("s", "sh", "ch", "x", "o")) else "s")
        return rest
    return words


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    head = text[: max_chars - 1]
    space = head.rfind(" ")
    if space >= max_chars // 2:
        head = head[:space]
    return head.rstrip(" ,;:—-") + "…"


def memory_snippet(text: str, max_chars: int = SNIPPET_MAX_CHARS) -> str:
    """A short third-person episode card of a user message (see the module docstring); "" when the
    message has no words."""
    clean = _SPACES.sub(" ", EMOJI.sub(" ", _CONTROL.sub(" ", text[: CLASSIFY_MAX_CHARS * 2]))).strip()
    if not clean:
        return ""
    sentences = [s.strip() for s in _SENTENCE_END.split(clean) if s and s.strip()]
    candidates = [s for s in sentences if not set(tokens(s).words) <= _GREETINGS]
    if not candidates:
        candidates = sentences or [clean]
    chosen = next((s for s in candidates if _classify(tokens(s))[0] != "general"), candidates[0])
    words = chosen.split(" ")
    while len(words) > 1 and _bare(words[0]) in _FILLERS:
        words = words[1:]
    words = _third_person(words)
    card = " ".join(words).strip(" ,;:—-")
    card = card.rstrip(".")
    if not card:
        return ""
    card = card[0].upper() + card[1:]
    return _cut(card, max_chars)


# --- filters ---------------------------------------------------------------------------------------


def diversity_filter(episodes: Sequence[Episode], per_day: int = 3, tz: tzinfo = DUBAI) -> list[Episode]:
    """At most ``per_day`` episodes per calendar day (in ``tz``); order kept."""
    per: Counter[object] = Counter()
    kept: list[Episode] = []
    for ep in episodes:
        day = ep.created_at.astimezone(tz).date()
        if per[day] < per_day:
            per[day] += 1
            kept.append(ep)
    return kept


NEGATIVE_EMOTION = Lexicon.of(
    "устал*",
    "грус*",
    "печал*",
    "расстро*",
    "бесит",
    "злюсь",
    "злая",
    "злой",
    "нервнича*",
    "тревож*",
    "боюсь",
    "страшн*",
    "одинок*",
    "обид*",
    "плак*",
    "депресс*",
    "стресс*",
    "вымотал*",
    "выгорел*",
    "разочаров*",
    "стыдн*",
    "ужасн*",
    "плохо",
    "tired",
    "exhausted",
    "sad",
    "upset",
    "angry",
    "annoyed",
    "anxious",
    "stressed",
    "lonely",
    "scared",
    "afraid",
    "depressed",
    "nervous",
    "worried",
    "frustrated",
    "cried",
    "crying",
    "overwhelmed",
    "miserable",
    "ashamed",
    "awful",
    "terrible",
)
PAINFUL = Lexicon.of(
    "расстал*",
    "развод*",
    "развелись",
    "бросил",
    "бросила",
    "изменил",
    "изменила",
    "умер",
    "умерла",
    "умерли",
    "смерт*",
    "похорон*",
    "болезн*",
    "болею",
    "заболел*",
    "диагноз*",
    "больниц*",
    "уволил*",
    "уволен*",
    "потеряла работу",
    "потерял работу",
    "выкидыш*",
    "толст*",
    "поправил*",
    "растолст*",
    "лишний вес",
    "жирн*",
    "некрасив*",
    "уродлив*",
    "провал*",
    "завалил*",
    "долг",
    "долги",
    "долгов",
    "рак",
    "онколог*",
    "breakup",
    "broke up",
    "divorce",
    "divorced",
    "died",
    "death",
    "funeral",
    "passed away",
    "illness",
    "sick",
    "diagnosis",
    "hospital",
    "fired",
    "laid off",
    "lost my job",
    "miscarriage",
    "fat",
    "gained weight",
    "ugly",
    "failed",
    "debt",
    "cancer",
    "cheated",
)


def is_negative_mood(mood: MoodFrame | None, valence_max: float = 0.3, frustration_min: float = 0.5) -> bool:
    if mood is None:
        return False
    return (
        mood.emotion.valence <= valence_max
        or mood.signals.frustration >= frustration_min
        or mood.topic.action == "defuse"
    )


def is_painful(card: str, memory_type: str) -> bool:
    toks = tokens(card)
    if PAINFUL.first(toks) is not None:
        return True
    return memory_type == "emotion" and NEGATIVE_EMOTION.first(toks) is not None


def emotional_filter(
    episodes: Sequence[Episode],
    mood: MoodFrame | None,
    *,
    valence_max: float = 0.3,
    frustration_min: float = 0.5,
) -> tuple[list[Episode], list[Episode]]:
    """(kept, excluded): on a negative mood the painful episodes are excluded."""
    if not is_negative_mood(mood, valence_max, frustration_min):
        return list(episodes), []
    kept: list[Episode] = []
    excluded: list[Episode] = []
    for ep in episodes:
        (excluded if is_painful(ep.episode_card, ep.memory_type) else kept).append(ep)
    return kept, excluded


def density_cap(
    episodes: Sequence[Episode],
    recent_memory_flags: Sequence[bool],
    max_per_response: int = 3,
    max_density: float = 0.3,
    window: int = 10,
) -> tuple[list[Episode], bool]:
    """(episodes for this answer, whether this answer uses memory).

    ``recent_memory_flags``: for the previous answers, **newest first** (as
    ``store.memory_flags`` reads them), whether each used memory.
    """
    if not episodes or max_per_response <= 0:
        return [], False
    previous = sum(1 for used in list(recent_memory_flags)[: window - 1] if used)
    if previous + 1 > max_density * window + 1e-9:
        return [], False
    return list(episodes[:max_per_response]), True
