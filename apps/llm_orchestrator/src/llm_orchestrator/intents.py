# ruff: noqa: RUF001, RUF002  (Russian words are Cyrillic on purpose)
"""Rule-based intent of a user message (Russian + English keywords), microseconds per message.

Order (first match wins):

1. ``forget`` — забудь / не запоминай / удали это / forget (this|that|it) / delete that: the user
   asks UNDE to forget; the caller offers the soft forget, nothing is routed;
2. ``recognition`` — a photo is attached (``requires_recognition``, ``photo_url`` passed on), or a
   "what is this" phrase (что это за, что за вещь, найди такое же, find this, what is this): without
   a photo nothing is routed, the LLM asks for one;
3. ``navigation`` — a route phrase (как пройти, как добраться, где находится, на каком этаже,
   where is, how do I get, which floor, туалет, парковка, выход, toilet, parking, exit);
4. ``fashion`` — clothing, sizes, outfits, occasions, styling words (платье, размер, что надеть,
   образ, лук, dress, outfit, what to wear, size, …); ``requires_stylist`` when the message also
   asks for something (подбери, посоветуй, покажи, хочу, нужно, ищу, recommend, suggest, show me,
   looking for, need, want, or a question mark) — a remark about clothes is not a stylist call;
5. ``navigation`` again on a weak location word alone (магазин, ТЦ, store, shop, mall);
6. ``chitchat`` otherwise.

``persona_intent`` is what the Persona Agent's tone adapter understands: ``find_store`` for
navigation, ``availability`` for stock questions (есть в наличии, in stock, available in),
``buy`` for buying words (куплю, беру, оформить, buy, checkout), else the intent type.
"""

from __future__ import annotations

from llm_orchestrator.models import Intent, IntentType
from llm_orchestrator.text_rules import Lexicon, tokens

__all__ = ["classify_intent"]

FORGET = Lexicon.of(
    "забудь*",
    "не запоминай",
    "удали это",
    "сотри это",
    "forget this",
    "forget that",
    "forget it",
    "forget about",
    "delete that",
    "delete this",
    "dont remember",
)
WHAT_IS = Lexicon.of(
    "что это за",
    "что за вещь",
    "что это такое",
    "найди такое же",
    "найди такую же",
    "найди такой же",
    "где купить такое",
    "what is this",
    "whats this",
    "find this",
    "find me this",
    "where can i buy this",
    "what brand is",
)
ROUTE = Lexicon.of(
    "как пройти",
    "как добраться",
    "как дойти",
    "где находится",
    "где находятся",
    "на каком этаже",
    "где тут",
    "где здесь",
    "туалет*",
    "парковк*",
    "выход",
    "банкомат*",
    "лифт*",
    "эскалатор*",
    "where is",
    "where are",
    "how do i get",
    "how to get",
    "which floor",
    "what floor",
    "toilet",
    "restroom",
    "bathroom",
    "parking",
    "exit",
    "atm",
    "elevator",
    "escalator",
    "directions",
)
FASHION = Lexicon.of(
    "плать*",
    "юбк*",
    "брюк*",
    "джинс*",
    "рубашк*",
    "блуз*",
    "футболк*",
    "свитер*",
    "куртк*",
    "пальто",
    "пиджак*",
    "костюм*",
    "туфл*",
    "кроссовк*",
    "ботин*",
    "сапог*",
    "сумк*",
    "аксессуар*",
    "обув*",
    "одежд*",
    "наряд*",
    "образ*",
    "лук",
    "луки",
    "стил*",
    "размер*",
    "надеть",
    "одеться",
    "оденусь",
    "носить",
    "примерить",
    "примерк*",
    "шарф*",
    "пальт*",
    "худи",
    "топ",
    "шорты",
    "абай*",
    "dress",
    "dresses",
    "skirt",
    "trousers",
    "pants",
    "jeans",
    "shirt",
    "blouse",
    "tshirt",
    "sweater",
    "jacket",
    "coat",
    "blazer",
    "suit",
    "shoes",
    "sneakers",
    "boots",
    "heels",
    "bag",
    "handbag",
    "accessories",
    "outfit",
    "outfits",
    "look",
    "style",
    "styling",
    "size",
    "wear",
    "clothes",
    "clothing",
    "hoodie",
    "abaya",
    "fit",
    "fits",
)
ASK = Lexicon.of(
    "подбери*",
    "подобрать",
    "посоветуй*",
    "покажи*",
    "найди*",
    "хочу",
    "нужн*",
    "нужен",
    "ищу",
    "помоги*",
    "что надеть",
    "что одеть",
    "что выбрать",
    "какой",
    "какое",
    "какую",
    "какие",
    "recommend",
    "suggest",
    "show me",
    "find me",
    "looking for",
    "need",
    "want",
    "help me",
    "what to wear",
    "what should i wear",
    "which",
    "style me",
)
WEAK_PLACE = Lexicon.of(
    "магазин*", "тц", "молл*", "бутик*", "store", "stores", "shop", "shops", "mall", "boutique"
)
AVAILABILITY = Lexicon.of("в наличии", "есть ли", "есть в", "in stock", "available in", "availability")
BUY = Lexicon.of("куплю", "купить", "беру", "оформи*", "закажи*", "buy", "checkout", "purchase", "order it")


def classify_intent(message: str, has_photo: bool = False, photo_url: str | None = None) -> Intent:
    """The intent of ``message`` (see the module docstring)."""
    toks = tokens(message[:2000])
    intent_type: IntentType
    matched: list[str] = []
    requires_stylist = requires_recognition = False

    if (hit := FORGET.first(toks)) is not None:
        intent_type, matched = "forget", [hit]
    elif has_photo or photo_url is not None:
        intent_type, requires_recognition = "recognition", True
        matched = ["photo", *WHAT_IS.hits(toks)[:3]]
    elif (hit := WHAT_IS.first(toks)) is not None:
        intent_type, matched = "recognition", [hit]
    elif (hit := ROUTE.first(toks)) is not None:
        intent_type, matched = "navigation", [hit]
    elif fashion := FASHION.hits(toks):
        intent_type, matched = "fashion", fashion[:3]
        ask = ASK.first(toks)
        requires_stylist = ask is not None or "?" in message
        if ask is not None:
            matched.append(ask)
    elif (hit := WEAK_PLACE.first(toks)) is not None:
        intent_type, matched = "navigation", [hit]
    else:
        intent_type = "chitchat"

    persona_intent: str = intent_type
    if intent_type == "navigation":
        persona_intent = "find_store"
    elif AVAILABILITY.first(toks) is not None:
        persona_intent = "availability"
    elif BUY.first(toks) is not None:
        persona_intent = "buy"
    return Intent(
        type=intent_type,
        requires_stylist=requires_stylist,
        requires_recognition=requires_recognition,
        photo_url=photo_url if requires_recognition else None,
        persona_intent=persona_intent,
        matched=tuple(matched),
    )
