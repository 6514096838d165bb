# ruff: noqa: RUF001, RUF002  (Russian words are Cyrillic on purpose)
"""Instant fact extraction from a user message (rule-based, Russian + English) and the compact
profile built from stored facts (spec 01 KSP "instant extraction" + supersede; schema
``user_knowledge.knowledge_type``).

Every fact's ``data`` carries ``attribute``, its identity; ``supersede_key`` is ``"attribute"``
(``knowledge.store_fact``: an older active fact of the same type with the same attribute is
deactivated), so a new size replaces the old one and "не люблю Zara" replaces "люблю Zara".

Facts (knowledge_type: data attribute; confidence):

- name (меня зовут X, my name is X, call me X, I'm X) → style_profile: ``name``; 0.9
- style (мой стиль casual, I prefer minimalist) → style_profile: ``style:<s>`` + sentiment; 0.7
- clothing / shoe size, height, weight → body_params: ``size`` / ``shoe_size`` / ``height_cm`` /
  ``weight_kg``; 0.85 (weight 0.8)
- wants to lose weight / self-conscious about weight → body_params: ``weight_goal`` /
  ``weight_sensitive`` = true; 0.7
- a price cap with a currency or the word бюджет/budget → budget: ``max_item_price`` + currency; 0.85
- экономлю / on a budget, средний бюджет, деньги не проблема / luxury → budget: ``tier`` = tight /
  moderate / premium; 0.7
- a liked / disliked brand (known list, or a Latin name after a Russian like-verb) →
  brand_preferences: ``brand:<b>`` + sentiment; 0.75
- a liked / disliked colour (with a like / dislike verb) → color_preferences: ``color:<c>``; 0.7
- не ем глютен, аллергия на орехи, vegan, halal → behavior_patterns: ``diet:<v>`` (kind diet,
  restriction avoid / allergy); 0.85 / 0.9
- liked pastimes (кино, корейские триллеры, yoga) → behavior_patterns: ``interest:<v>``; 0.65
- an event with a date (свадьба 17 марта, birthday on May 5, завтра собеседование) → life_event:
  ``life_event:<type>:<date>`` + type, date, title; 0.8

Decisions: dietary restrictions are ``behavior_patterns`` (kind ``diet``: they are habits, not style
or body; the context agent gets them as ``allergies``), interests too (kind ``interest``). Facts
come only from statements: a sentence ending in "?" is a request, not a fact; a sentence is read
clause by clause (split at commas and но / а / but), so "люблю Zara, не люблю Shein" is two facts. A
sentence about someone else (у него / у подруги / my friend / my husband …) yields no body, name,
budget, brand, colour or style fact; its life events are kept (the user takes part). Values are
canonical English (colours, diets, interests) so the context agent matches them against event tags.
A life event's date without a year is the next such date (today counts); a past-tense sentence
(была, was) is an episode, not a life event; ``expires_at`` is the date + ``ttl_days`` (default 7)
at 00:00 in the users' time zone, after which the 03:00 life_event_expiry job deactivates it. A
softener in the sentence lowers the confidence by 0.1, an intensifier raises it by 0.05.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from llm_orchestrator.memory import INTENSIFIERS, SOFTENERS
from llm_orchestrator.text_rules import Lexicon, Tokens, tokens

__all__ = [
    "KNOWLEDGE_TYPES",
    "CompactProfile",
    "ExtractedFact",
    "KnowledgeFact",
    "compact_profile",
    "extract_facts",
]

KNOWLEDGE_TYPES = (
    "style_profile",
    "body_params",
    "brand_preferences",
    "budget",
    "life_event",
    "behavior_patterns",
    "emotional_patterns",
    "color_preferences",
)
DUBAI = ZoneInfo("Asia/Dubai")


@dataclass(frozen=True, slots=True)
class ExtractedFact:
    knowledge_type: str
    data: dict[str, Any]
    confidence: float
    supersede_key: str | None = "attribute"
    expires_at: datetime | None = None


class KnowledgeFact(Protocol):
    """A stored fact as :func:`compact_profile` reads it (``knowledge.Fact`` fits)."""

    @property
    def knowledge_type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def confidence(self) -> float | None: ...
    @property
    def created_at(self) -> datetime: ...


# --- lexicons ----------------------------------------------------------------------------------

LIKE = Lexicon.of(
    "люблю",
    "обожаю",
    "нравится",
    "нравятся",
    "любимый",
    "любимая",
    "любимые",
    "любимого",
    "фанат*",
    "предпочитаю",
    "мой стиль",
    "мой цвет",
    "мои цвета",
    "ношу в основном",
    "в основном ношу",
    "love",
    "like",
    "favourite",
    "favorite",
    "prefer",
    "fan of",
    "adore",
    "my style",
    "my colour",
    "my color",
    "mostly wear",
    "into",
)
DISLIKE = Lexicon.of(
    "не люблю",
    "ненавижу",
    "не нравится",
    "не нравятся",
    "терпеть не могу",
    "не ношу",
    "не переношу",
    "hate",
    "dont like",
    "cant stand",
    "not a fan",
    "never wear",
    "dont wear",
    "dislike",
)
THIRD_PARTY = Lexicon.of(
    "у него",
    "у нее",
    "у мужа",
    "у жены",
    "у подруги",
    "у друга",
    "у мамы",
    "у сестры",
    "у брата",
    "у дочки",
    "у сына",
    "у парня",
    "у девушки",
    "его размер",
    "ее размер",
    "мой муж",
    "моя подруга",
    "моя мама",
    "моя сестра",
    "мой парень",
    "my friend",
    "my husband",
    "my wife",
    "my sister",
    "my brother",
    "my mom",
    "my mother",
    "my boyfriend",
    "my girlfriend",
    "my daughter",
    "my son",
    "his",
    "her",
    "he",
    "she",
)
PAST = Lexicon.of("была", "был", "было", "прошла", "прошел", "прошло", "was", "were", "went", "had")
WEIGHT_GOAL = Lexicon.of(
    "похудеть", "сбросить вес", "скинуть", "худею", "на диете", "lose weight", "losing weight", "slim down"
)
WEIGHT_SENSITIVE = Lexicon.of(
    "стесняюсь",
    "комплекс*",
    "полнит",
    "толстит",
    "полню",
    "поправилась",
    "self conscious",
    "insecure",
    "makes me look fat",
    "look fat",
)
TIGHT = Lexicon.of(
    "экономлю",
    "коплю",
    "ограниченный бюджет",
    "небольшой бюджет",
    "маленький бюджет",
    "дорого для меня",
    "на мели",
    "on a budget",
    "tight budget",
    "saving up",
    "cant afford",
    "low budget",
)
PREMIUM = Lexicon.of(
    "деньги не проблема",
    "цена не важна",
    "не важна цена",
    "люкс",
    "премиум",
    "money is no object",
    "price doesnt matter",
    "luxury",
    "high end",
)
MODERATE = Lexicon.of("средний бюджет", "moderate budget", "mid range", "midrange")

BRANDS = {
    b.lower(): b
    for b in (
        "Zara",
        "Massimo Dutti",
        "H&M",
        "Mango",
        "COS",
        "Uniqlo",
        "Bershka",
        "Pull&Bear",
        "Stradivarius",
        "Oysho",
        "Gap",
        "Nike",
        "Adidas",
        "Puma",
        "Reebok",
        "New Balance",
        "Levi's",
        "Tommy Hilfiger",
        "Calvin Klein",
        "Ralph Lauren",
        "Lacoste",
        "Guess",
        "Michael Kors",
        "Coach",
        "Gucci",
        "Prada",
        "Dior",
        "Chanel",
        "Louis Vuitton",
        "Hermes",
        "Balenciaga",
        "Versace",
        "Armani",
        "Hugo Boss",
        "Max Mara",
        "Sandro",
        "Maje",
        "Reiss",
        "Ted Baker",
        "All Saints",
        "Charles & Keith",
        "Aldo",
        "Skechers",
        "Converse",
        "Vans",
        "Lululemon",
        "Victoria's Secret",
        "Marks & Spencer",
        "Next",
        "Shein",
        "Forever 21",
        "Sephora",
        "Bath & Body Works",
        "Mothercare",
        "Splash",
        "Max",
        "R&B",
        "Centrepoint",
        "Namshi",
        "Ounass",
        "Farfetch",
    )
}
_BRAND_PHRASES = tuple(
    (" " + " ".join(re.findall(r"\w+", k.replace("'", ""))) + " ", v) for k, v in BRANDS.items()
)
_ALL_CAPS_BRANDS = frozenset({"cos", "max", "next", "gap", "coach", "guess"})  # common words too

COLORS = (
    (Lexicon.of("темно синий", "темно-синий", "navy"), "navy"),
    (Lexicon.of("черн*", "black"), "black"),
    (Lexicon.of("бел*", "white"), "white"),
    (Lexicon.of("красн*", "red"), "red"),
    (Lexicon.of("синий", "синяя", "синее", "синие", "синего", "blue"), "blue"),
    (Lexicon.of("голуб*", "light blue"), "light blue"),
    (Lexicon.of("зелен*", "green"), "green"),
    (Lexicon.of("желт*", "yellow"), "yellow"),
    (Lexicon.of("розов*", "pink"), "pink"),
    (Lexicon.of("фиолетов*", "purple"), "purple"),
    (Lexicon.of("серый", "серая", "серое", "серые", "серого", "grey", "gray"), "grey"),
    (Lexicon.of("бежев*", "beige"), "beige"),
    (Lexicon.of("коричнев*", "brown"), "brown"),
    (Lexicon.of("оранжев*", "orange"), "orange"),
    (Lexicon.of("бордов*", "burgundy"), "burgundy"),
    (Lexicon.of("пастел*", "pastel", "pastels"), "pastel"),
    (Lexicon.of("землист*", "earth tones", "earthy"), "earth tones"),
    (Lexicon.of("оливков*", "olive"), "olive"),
    (Lexicon.of("изумрудн*", "emerald"), "emerald"),
)
STYLES = (
    (Lexicon.of("смарт кэжуал", "smart casual"), "smart casual"),
    (Lexicon.of("кэжуал", "casual"), "casual"),
    (Lexicon.of("классик*", "classic"), "classic"),
    (Lexicon.of("минимализм*", "минималист*", "minimalist", "minimalism", "minimal"), "minimalist"),
    (Lexicon.of("спортивн*", "sporty", "athleisure"), "sporty"),
    (Lexicon.of("бохо", "boho"), "boho"),
    (Lexicon.of("уличн*", "streetwear"), "streetwear"),
    (Lexicon.of("романтич*", "romantic"), "romantic"),
    (Lexicon.of("элегантн*", "elegant"), "elegant"),
    (Lexicon.of("делов*", "business", "office"), "business"),
    (Lexicon.of("скромн*", "modest"), "modest"),
)
DIET_TRIGGER = Lexicon.of(
    "не ем",
    "не пью",
    "аллерги*",
    "непереносимост*",
    "без глютена",
    "без лактозы",
    "веган*",
    "вегетариан*",
    "халяль",
    "dont eat",
    "allergic",
    "allergy",
    "intolerant",
    "intolerance",
    "gluten free",
    "dairy free",
    "vegan",
    "vegetarian",
    "halal",
    "cant eat",
)
ALLERGY = Lexicon.of("аллерги*", "allergic", "allergy")
DIETS = (
    (Lexicon.of("глютен*", "gluten"), "gluten"),
    (Lexicon.of("лактоз*", "молочн*", "lactose", "dairy"), "lactose"),
    (Lexicon.of("арахис*", "peanut", "peanuts"), "peanuts"),
    (Lexicon.of("орех*", "nuts", "nut"), "nuts"),
    (Lexicon.of("морепродукт*", "seafood", "shellfish"), "seafood"),
    (Lexicon.of("рыб*", "fish"), "fish"),
    (Lexicon.of("свинин*", "pork"), "pork"),
    (Lexicon.of("мяс*", "meat"), "meat"),
    (Lexicon.of("сахар*", "sugar"), "sugar"),
    (Lexicon.of("яйц*", "eggs"), "eggs"),
    (Lexicon.of("веган*", "vegan"), "vegan"),
    (Lexicon.of("вегетариан*", "vegetarian"), "vegetarian"),
    (Lexicon.of("халяль", "halal"), "halal"),
)
INTERESTS = (
    (Lexicon.of("корейск* триллер*", "korean thriller", "korean thrillers"), "korean_thrillers"),
    (Lexicon.of("кино", "фильм*", "триллер*", "cinema", "movies", "films", "thrillers"), "cinema"),
    (Lexicon.of("театр*", "theatre", "theater"), "theatre"),
    (Lexicon.of("музык*", "концерт*", "music", "concerts"), "music"),
    (Lexicon.of("йог*", "yoga"), "yoga"),
    (Lexicon.of("спорт*", "фитнес*", "зал", "gym", "fitness", "sport", "sports"), "fitness"),
    (Lexicon.of("кофе", "coffee"), "coffee"),
    (Lexicon.of("книг*", "чтение", "читать", "books", "reading"), "books"),
    (Lexicon.of("искусств*", "выставк*", "art", "exhibitions"), "art"),
    (Lexicon.of("путешеств*", "travel", "travelling", "traveling"), "travel"),
)
EVENTS = (
    (Lexicon.of("свадьб*", "wedding"), "wedding"),
    (Lexicon.of("день рождения", "днюха", "др", "birthday", "bday"), "birthday"),
    (Lexicon.of("годовщин*", "anniversary"), "anniversary"),
    (Lexicon.of("собеседован*", "interview"), "interview"),
    (Lexicon.of("выпускн*", "graduation", "prom"), "graduation"),
    (Lexicon.of("вечеринк*", "party"), "party"),
    (Lexicon.of("свидани*", "date night"), "date"),
    (Lexicon.of("концерт*", "concert"), "concert"),
    (
        Lexicon.of("поездк*", "отпуск*", "путешеств*", "улетаю", "trip", "vacation", "holiday", "flight"),
        "trip",
    ),
)

_RU_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            "января",
            "февраля",
            "марта",
            "апреля",
            "мая",
            "июня",
            "июля",
            "августа",
            "сентября",
            "октября",
            "ноября",
            "декабря",
        ]
    )
}
_EN_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ]
    )
}
_EN_MONTHS.update({k[:3]: v for k, v in list(_EN_MONTHS.items())})
_EN_MONTHS["sept"] = 9

_SENTENCE = re.compile(r"(?:[^.!?;\n]|(?<=\d)\.(?=\d))+[.!?;\n]*")
#: clauses of a sentence: "люблю Zara, не люблю Shein" states two things
_CLAUSE = re.compile(r",\s+|\s+(?:но|а|зато|but|whereas)\s+", re.I)
_NAME = re.compile(
    r"(?:меня зовут|зови меня|зовите меня|мо[её] имя|my name is|call me)\s*[—:-]?\s*"
    r"([A-Za-zА-Яа-яЁё][A-Za-zА-Яа-яЁё-]{1,29})",
    re.IGNORECASE,
)
_IM_NAME = re.compile(r"(?:^|\b)(?:I'm|I am|Im)\s+([A-Z][a-z]{1,29})\b")
_SHOE = re.compile(r"(?:размер обуви|обувь|shoe size|shoes in size|shoe)\D{0,12}?(\d{2}(?:[.,]5)?)\b", re.I)
_SIZE = re.compile(
    r"(?:мой размер|размер|ношу|size|i wear|i am a|i'm a)\s*[—:-]?\s*(?:это\s+|is\s+)?"
    r"(xxxl|xxl|xl|xxs|xs|s|m|l|хс|с|м|\d{2})(?![\w])",
    re.I,
)
_HEIGHT = re.compile(r"(?:рост|height|i am|i'm)\s*[—:-]?\s*(?:is\s+)?(1\d{2}|2[0-2]\d)\s*(см|cm)?", re.I)
_WEIGHT = re.compile(r"(?:вешу|мой вес|вес|i weigh|weight)\s*[—:-]?\s*(?:is\s+)?(\d{2,3})\s*(кг|kg)?", re.I)
_MONEY = re.compile(
    r"(?:(бюджет\w*|budget)\s*(?:[—:-]|is|of|в|до|около|under|up to)?\s*)?"
    r"(?:(до|не дороже|максимум|не больше|under|up to|no more than|below|max|maximum)\s*)?"
    r"([$€])?\s*(\d{1,3}(?:[ ,]\d{3})*|\d+)\s*(aed|дирхам\w*|dhs?|дх|usd|долл\w*|eur|евро|руб\w*|₽|k)?",
    re.I,
)
_RU_DATE = re.compile(r"(\d{1,2})\s+(" + "|".join(_RU_MONTHS) + r")(?:\s+(\d{4}))?", re.I)
_EN_DATE = re.compile(
    r"(?:(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]{3,9})|([a-z]{3,9})\s+(\d{1,2})(?:st|nd|rd|th)?)"
    r"(?:,?\s+(\d{4}))?",
    re.I,
)
_NUM_DATE = re.compile(r"\b(\d{1,2})[./](\d{1,2})(?:[./](\d{2,4}))?\b")
_IN_DAYS = re.compile(r"(?:через|in)\s+(\d{1,3})\s*(дн\w*|день|недел\w*|days?|weeks?)", re.I)
_NAME_STOP = frozenset(
    [
        "tired",
        "fine",
        "good",
        "ok",
        "okay",
        "sorry",
        "here",
        "back",
        "ready",
        "busy",
        "happy",
        "sad",
        "new",
        "not",
        "so",
        "just",
        "also",
        "very",
        "looking",
        "going",
        "russian",
        "english",
        "arab",
        "arabic",
        "indian",
        "british",
        "american",
        "from",
        "in",
        "at",
        "a",
        "an",
        "the",
    ]
)
_CYR_SIZE = str.maketrans({"х": "x", "с": "s", "м": "m"})


def _currency(token: str | None, symbol: str | None) -> str | None:
    t = (token or "").lower()
    if symbol == "$" or t.startswith(("usd", "долл")):
        return "USD"
    if symbol == "€" or t.startswith(("eur", "евро")):
        return "EUR"
    if t.startswith(("руб", "₽")):
        return "RUB"
    if t.startswith(("aed", "дирхам", "dh", "дх")):
        return "AED"
    return None


def _adjust(base: float, toks: Tokens) -> float:
    value = base
    if SOFTENERS.first(toks) is not None:
        value -= 0.1
    if INTENSIFIERS.first(toks) is not None:
        value += 0.05
    return round(min(0.95, max(0.1, value)), 2)


def _sentiment(toks: Tokens) -> str | None:
    if DISLIKE.first(toks) is not None:
        return "dislike"
    if LIKE.first(toks) is not None:
        return "like"
    return None


def _next_date(day: int, month: int, year: int | None, today: date) -> date | None:
    try:
        if year is not None:
            return date(year, month, day)
        found = date(today.year, month, day)
        return found if found >= today else date(today.year + 1, month, day)
    except ValueError:
        return None


def _find_date(sentence: str, today: date) -> date | None:
    low = sentence.lower()
    if m := _RU_DATE.search(low):
        return _next_date(int(m[1]), _RU_MONTHS[m[2].lower()], int(m[3]) if m[3] else None, today)
    for m in _EN_DATE.finditer(low):
        day, month = (m[1], m[2]) if m[1] else (m[4], m[3])
        if month and month.lower() in _EN_MONTHS:
            return _next_date(int(day), _EN_MONTHS[month.lower()], int(m[5]) if m[5] else None, today)
    if m := _NUM_DATE.search(low):
        year = int(m[3]) if m[3] else None
        if year is not None and year < 100:
            year += 2000
        return _next_date(int(m[1]), int(m[2]), year, today)
    if m := _IN_DAYS.search(low):
        n = int(m[1])
        return today + timedelta(days=n * 7 if m[2].lower().startswith(("нед", "week")) else n)
    toks = tokens(low)
    if "послезавтра" in toks.words or " day after tomorrow " in toks.joined:
        return today + timedelta(days=2)
    if "завтра" in toks.words or "tomorrow" in toks.words:
        return today + timedelta(days=1)
    if "сегодня" in toks.words or "today" in toks.words or "tonight" in toks.words:
        return today
    return None


def _canonical(options: Iterable[tuple[Lexicon, str]], toks: Tokens) -> list[str]:
    out: list[str] = []
    for lex, value in options:
        if lex.first(toks) is not None and value not in out:
            out.append(value)
    return out


def _brands(sentence: str, toks: Tokens) -> list[str]:
    found = [name for phrase, name in _BRAND_PHRASES if phrase in toks.joined]
    found = [
        b
        for b in found
        if b.lower() not in _ALL_CAPS_BRANDS or re.search(r"\b" + re.escape(b) + r"\b", sentence)
    ]
    for m in re.finditer(
        r"(?:люблю|обожаю|нравится|предпочитаю|любимый бренд\s*[—:-]?)\s+"
        r"([A-Z][A-Za-z&'.-]+(?:\s+[A-Z][A-Za-z&'.-]+)?)",
        sentence,
    ):
        if m[1] not in found:
            found.append(m[1])
    return found


def _sentence_facts(sentence: str, today: date, tz: tzinfo, ttl_days: int) -> list[ExtractedFact]:
    toks = tokens(sentence)
    out: list[ExtractedFact] = []
    own = THIRD_PARTY.first(toks) is None
    past = PAST.first(toks) is not None

    def add(kind: str, data: dict[str, Any], base: float, expires_at: datetime | None = None) -> None:
        out.append(ExtractedFact(kind, data, _adjust(base, toks), "attribute", expires_at))

    if own:
        name = _NAME.search(sentence)
        if name is None:
            im = _IM_NAME.search(sentence)
            if im and im[1].lower() not in _NAME_STOP and im[1].lower() not in BRANDS:
                name = im
        if name is not None and name[1].lower() not in _NAME_STOP:
            add("style_profile", {"attribute": "name", "value": name[1][:1].upper() + name[1][1:]}, 0.9)
        if m := _SHOE.search(sentence):
            add("body_params", {"attribute": "shoe_size", "value": m[1].replace(",", ".")}, 0.85)
        elif m := _SIZE.search(sentence):
            size = m[1].lower().translate(_CYR_SIZE)
            add("body_params", {"attribute": "size", "value": size.upper()}, 0.85)
        m = _HEIGHT.search(sentence)
        if m and (m[2] or "рост" in m[0].lower() or "height" in m[0].lower()):
            add("body_params", {"attribute": "height_cm", "value": int(m[1])}, 0.85)
        if m := _WEIGHT.search(sentence):
            add("body_params", {"attribute": "weight_kg", "value": int(m[1])}, 0.8)
        if WEIGHT_GOAL.first(toks) is not None:
            add("body_params", {"attribute": "weight_goal", "value": True}, 0.7)
        if WEIGHT_SENSITIVE.first(toks) is not None:
            add("body_params", {"attribute": "weight_sensitive", "value": True}, 0.7)
        for m in _MONEY.finditer(sentence):
            budget_word, cap_word, symbol, amount, unit = m[1], m[2], m[3], m[4], m[5]
            currency = _currency(unit, symbol)
            if not (budget_word or (currency and (cap_word or budget_word or symbol or unit))):
                continue
            if not budget_word and not currency:
                continue
            value = float(re.sub(r"[ ,]", "", amount)) * (1000 if (unit or "").lower() == "k" else 1)
            if value <= 0:
                continue
            add(
                "budget",
                {"attribute": "max_item_price", "value": value, "currency": currency or "AED"},
                0.85,
            )
            break
        tier = (
            "tight"
            if TIGHT.first(toks) is not None
            else "premium"
            if PREMIUM.first(toks) is not None
            else "moderate"
            if MODERATE.first(toks) is not None
            else None
        )
        if tier:
            add("budget", {"attribute": "tier", "value": tier}, 0.7)
        sentiment = _sentiment(toks)
        if sentiment is not None:
            for brand in _brands(sentence, toks):
                add(
                    "brand_preferences",
                    {"attribute": f"brand:{brand.lower()}", "brand": brand, "sentiment": sentiment},
                    0.75,
                )
            colors = _canonical(COLORS, toks)
            if "navy" in colors and "blue" in colors:
                colors.remove("blue")  # тёмно-синий
            for color in colors:
                add(
                    "color_preferences",
                    {"attribute": f"color:{color}", "color": color, "sentiment": sentiment},
                    0.7,
                )
            for style in _canonical(STYLES, toks):
                add(
                    "style_profile",
                    {"attribute": f"style:{style}", "value": style, "sentiment": sentiment},
                    0.7,
                )
            if sentiment == "like":
                for interest in _canonical(INTERESTS, toks):
                    add(
                        "behavior_patterns",
                        {"attribute": f"interest:{interest}", "kind": "interest", "value": interest},
                        0.65,
                    )
        if DIET_TRIGGER.first(toks) is not None:
            allergy = ALLERGY.first(toks) is not None
            for diet in _canonical(DIETS, toks):
                add(
                    "behavior_patterns",
                    {
                        "attribute": f"diet:{diet}",
                        "kind": "diet",
                        "value": diet,
                        "restriction": "allergy" if allergy else "avoid",
                    },
                    0.9 if allergy else 0.85,
                )
    if not past:
        for lex, event_type in EVENTS:
            title = lex.first(toks)
            if title is None:
                continue
            when = _find_date(sentence, today)
            if when is None:
                continue
            expires = datetime.combine(when + timedelta(days=ttl_days), time(0), tzinfo=tz)
            add(
                "life_event",
                {
                    "attribute": f"life_event:{event_type}:{when.isoformat()}",
                    "type": event_type,
                    "date": when.isoformat(),
                    "title": title,
                },
                0.8,
                expires,
            )
            break
    return out


def extract_facts(
    text: str,
    now: datetime | None = None,
    *,
    tz: tzinfo = DUBAI,
    ttl_days: int = 7,
    max_chars: int = 4000,
) -> list[ExtractedFact]:
    """The facts a user message states (see the module docstring); one fact per attribute (the
    last statement of the message wins)."""
    today = (now or datetime.now(tz)).astimezone(tz).date()
    found: dict[tuple[str, str], ExtractedFact] = {}
    for m in _SENTENCE.finditer(text[:max_chars]):
        sentence = m[0].strip()
        if not sentence or sentence.endswith("?"):
            continue
        for clause in _CLAUSE.split(sentence.rstrip(".!;")):
            if not clause.strip():
                continue
            for fact in _sentence_facts(clause.strip(), today, tz, ttl_days):
                found[(fact.knowledge_type, str(fact.data["attribute"]))] = fact
    return list(found.values())


# --- compact profile -------------------------------------------------------------------------------


@dataclass(slots=True)
class CompactProfile:
    """What the stored facts give the turn: persona's ``user_knowledge_compact``, the context agent's
    ``compact_preferences`` and the [User Knowledge] lines of the prompt."""

    user_knowledge_compact: dict[str, Any] = field(default_factory=dict)
    compact_preferences: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        name = self.user_knowledge_compact.get("name")
        return name if isinstance(name, str) else None

    @property
    def favorite_brands(self) -> list[str]:
        return list(self.user_knowledge_compact.get("favorite_brands", []))


def _latest(facts: Iterable[KnowledgeFact]) -> list[KnowledgeFact]:
    best: dict[tuple[str, str], KnowledgeFact] = {}
    for fact in facts:
        data = fact.data if isinstance(fact.data, Mapping) else {}
        attribute = data.get("attribute")
        key = (fact.knowledge_type, str(attribute) if attribute is not None else repr(sorted(data.items())))
        old = best.get(key)
        if old is None or (fact.created_at, fact.confidence or 0) >= (old.created_at, old.confidence or 0):
            best[key] = fact
    return sorted(best.values(), key=lambda f: f.created_at, reverse=True)


_TIER_RU = {"tight": "экономит", "moderate": "средний", "premium": "премиум"}
_EVENT_RU = {
    "wedding": "свадьба",
    "birthday": "день рождения",
    "anniversary": "годовщина",
    "interview": "собеседование",
    "graduation": "выпускной",
    "party": "вечеринка",
    "date": "свидание",
    "concert": "концерт",
    "trip": "поездка",
}


def compact_profile(
    facts: Iterable[KnowledgeFact], now: datetime | None = None, *, tz: tzinfo = DUBAI
) -> CompactProfile:
    """The compact profile of a user's active facts (newest per attribute wins)."""
    today = (now or datetime.now(tz)).astimezone(tz).date()
    name: str | None = None
    sizes: dict[str, Any] = {}
    body = {"weight_sensitive": False, "weight_goal": False}
    tier: str | None = None
    cap: tuple[float, str] | None = None
    brands: list[str] = []
    disliked_brands: list[str] = []
    colors: list[str] = []
    disliked_colors: list[str] = []
    styles: list[str] = []
    diets: list[tuple[str, str]] = []
    interests: list[str] = []
    events: list[dict[str, Any]] = []
    sensitivity = "medium"
    for fact in _latest(facts):
        d = fact.data if isinstance(fact.data, Mapping) else {}
        attr = str(d.get("attribute", ""))
        value = d.get("value")
        kind = fact.knowledge_type
        sentiment = d.get("sentiment", "like")
        if kind == "style_profile":
            if attr == "name" and isinstance(value, str) and name is None:
                name = value
            elif isinstance(d.get("name"), str) and name is None:
                name = d["name"]
            elif attr.startswith("style:") and isinstance(value, str) and sentiment == "like":
                styles.append(value)
        elif kind == "body_params":
            if attr in ("weight_goal", "weight_sensitive") and isinstance(value, bool):
                body[attr] = value
            elif attr in ("size", "shoe_size", "height_cm", "weight_kg") and value is not None:
                sizes.setdefault(attr, value)
        elif kind == "budget":
            if attr == "tier" and value in _TIER_RU and tier is None:
                tier = str(value)
            elif attr == "max_item_price" and isinstance(value, int | float) and cap is None:
                cap = (float(value), str(d.get("currency") or "AED"))
        elif kind == "brand_preferences" and isinstance(d.get("brand"), str):
            (brands if sentiment == "like" else disliked_brands).append(d["brand"])
        elif kind == "color_preferences" and isinstance(d.get("color"), str):
            (colors if sentiment == "like" else disliked_colors).append(d["color"])
        elif kind == "behavior_patterns" and isinstance(value, str):
            if d.get("kind") == "diet":
                diets.append((value, str(d.get("restriction", "avoid"))))
            elif d.get("kind") == "interest":
                interests.append(value)
            elif d.get("kind") == "cultural_sensitivity" and value in ("high", "medium", "low"):
                sensitivity = value
        elif kind == "life_event" and isinstance(d.get("type"), str) and isinstance(d.get("date"), str):
            try:
                when = date.fromisoformat(d["date"])
            except ValueError:
                continue
            if when >= today:
                events.append({"type": d["type"], "date": d["date"], "title": d.get("title")})
    events.sort(key=lambda e: str(e["date"]))
    budget: dict[str, Any] = {
        "tier": tier,
        "max_item_price": cap[0] if cap else None,
        "currency": cap[1] if cap else "AED",
    }
    uk = {
        "name": name,
        "budget": budget,
        "body": body,
        "life_events": events[:10],
        "favorite_brands": brands[:20],
    }
    allergies = [v for v, _ in diets]
    prefs = {
        "favorite_brands": brands[:50],
        "allergies": allergies[:50],
        "interests": interests[:50],
        "cultural_sensitivity_level": sensitivity,
    }
    lines: list[str] = []
    if name:
        lines.append(f"Имя: {name}.")
    size_parts = []
    labels = (
        ("size", "Размер: {}"),
        ("shoe_size", "Обувь: {}"),
        ("height_cm", "Рост: {} см"),
        ("weight_kg", "Вес: {} кг"),
    )
    for key, label in labels:
        if key in sizes and not (key == "weight_kg" and body["weight_sensitive"]):
            size_parts.append(label.format(sizes[key]))
    if size_parts:
        lines.append(". ".join(size_parts) + ".")
    if tier or cap:
        text = f"Бюджет: {_TIER_RU[tier]}" if tier else "Бюджет:"
        if cap:
            text += f" (до {cap[0]:g} {cap[1]} за вещь)"
        lines.append(text.replace("Бюджет: (", "Бюджет: до ").replace("Бюджет: до до", "Бюджет: до") + ".")
    if brands or disliked_brands:
        parts = [f"Бренды: {', '.join(brands[:10])}"] if brands else []
        if disliked_brands:
            parts.append(f"Не любит: {', '.join(disliked_brands[:5])}")
        lines.append(". ".join(parts) + ".")
    if colors or disliked_colors:
        parts = [f"Цвета: {', '.join(colors[:8])}"] if colors else []
        if disliked_colors:
            parts.append(f"Не носит: {', '.join(disliked_colors[:5])}")
        lines.append(". ".join(parts) + ".")
    if styles:
        lines.append(f"Стиль: {', '.join(styles[:5])}.")
    if diets:
        avoid = [v for v, r in diets if r != "allergy"]
        allergic = [v for v, r in diets if r == "allergy"]
        parts = [f"Не ест: {', '.join(avoid)}"] if avoid else []
        if allergic:
            parts.append(f"Аллергия: {', '.join(allergic)}")
        lines.append(". ".join(parts) + ".")
    if interests:
        lines.append(f"Интересы: {', '.join(interests[:8])}.")
    if body["weight_sensitive"] or body["weight_goal"]:
        lines.append("Тема веса чувствительна: не комментировать фигуру.")
    if events:
        lines.append(
            "События: "
            + ", ".join(
                f"{e['title'] or _EVENT_RU.get(str(e['type']), e['type'])} {e['date']}" for e in events[:5]
            )
            + "."
        )
    if sensitivity != "medium":
        lines.append(f"Cultural sensitivity: {sensitivity}.")
    return CompactProfile(user_knowledge_compact=uk, compact_preferences=prefs, lines=lines)
