"""response_description of a consultant artefact (spec 02 §13/§14): a backend-only, template-built
text stored with the assistant message, searched by full text (``to_tsvector('simple', ...)``) and
shown to the LLM as the Referenced Artifact / episode card.

Rules: only artefacts get one (an answer with stylist items or recognition matches); a plain text
answer, or a result with no items, gets None. Each item is one clause with the mandatory tokens —
``SKU <sku>`` and/or ``item_id <id>``, the brand, the store when known — then name, category,
colour and price when known, e.g.
``Zara Платье миди (dress, navy) SKU ZR-123 item_id 991, магазин Zara Dubai Hills, 199 AED``.
Items are joined by "; " after a prefix ("Подборка стилиста: ", "Распознано на фото: "); at most
``MAX_ITEMS`` items and ``MAX_CHARS`` characters — items are dropped whole, so a listed item
never loses a mandatory token. Values are single-lined (tsvector 'simple' keeps tokens exact).
Input is read leniently: the Intelistyle client's items (``item_id``, ``sku``, ``brand``, ``store``,
``name``, ``price``, ``currency``), the recognition pipeline's result (``items[].matches[]`` with
``sku_id``, ``brand``, ``metadata{name, price, currency, category, colour}``,
``availability[]{store, mall}``), dataclasses too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MAX_CHARS",
    "MAX_ITEMS",
    "build_response_description",
    "describe_item",
    "for_recognition",
    "for_stylist",
    "recognition_matches",
]

MAX_ITEMS = 8
MAX_CHARS = 1200
_SPACES = re.compile(r"\s+")


def _as_mapping(raw: object) -> Mapping[str, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        return dataclasses.asdict(raw)
    return None


def _text(value: object) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return _SPACES.sub(" ", str(value)).strip()[:120]


def _pick(item: Mapping[str, Any], *keys: str) -> str:
    meta = _as_mapping(item.get("metadata")) or {}
    for source in (item, meta):
        for key in keys:
            value = _text(source.get(key))
            if value:
                return value
    return ""


def _store(item: Mapping[str, Any]) -> str:
    direct = _pick(item, "store", "store_name", "retailer")
    if direct:
        return direct
    for key in ("availability", "stores"):
        entries = item.get(key)
        if isinstance(entries, list):
            for entry in entries:
                m = _as_mapping(entry)
                if m is not None:
                    name = _text(m.get("store") or m.get("store_name"))
                    if name:
                        mall = _text(m.get("mall"))
                        return f"{name} ({mall})" if mall else name
    return ""


def describe_item(raw: object) -> str | None:
    """One item's clause, or None when it has neither a SKU nor an item id."""
    item = _as_mapping(raw)
    if item is None:
        return None
    sku = _pick(item, "sku", "sku_id", "SKU", "product_sku")
    item_id = _pick(item, "item_id", "product_id", "id")
    if not sku and not item_id:
        return None
    brand = _pick(item, "brand", "brand_name")
    name = _pick(item, "name", "title")
    details = ", ".join(v for v in (_pick(item, "category"), _pick(item, "colour", "color")) if v)
    head = " ".join(v for v in (brand, name) if v)
    if details:
        head = f"{head} ({details})" if head else f"({details})"
    ids = " ".join(v for v in (f"SKU {sku}" if sku else "", f"item_id {item_id}" if item_id else "") if v)
    parts = [f"{head} {ids}".strip()]
    store = _store(item)
    if store:
        parts.append(f"магазин {store}")
    price = _pick(item, "price")
    if price:
        parts.append(f"{price} {_pick(item, 'currency')}".strip())
    return ", ".join(parts)


def _join(prefix: str, items: Iterable[object]) -> str | None:
    clauses: list[str] = []
    size = len(prefix)
    for raw in items:
        if len(clauses) >= MAX_ITEMS:
            break
        clause = describe_item(raw)
        if clause is None:
            continue
        extra = len(clause) + (2 if clauses else 0)
        if size + extra > MAX_CHARS:
            break
        clauses.append(clause)
        size += extra
    return prefix + "; ".join(clauses) if clauses else None


def _items_of(result: object, keys: tuple[str, ...]) -> list[object]:
    if isinstance(result, list):
        return list(result)
    m = _as_mapping(result)
    if m is None:
        return []
    for key in keys:
        value = m.get(key)
        if isinstance(value, list):
            return list(value)
    return []


def for_stylist(result: object) -> str | None:
    """Stylist items (a list, or a dict with ``items`` / ``recommendations`` / ``results``)."""
    return _join("Подборка стилиста: ", _items_of(result, ("items", "recommendations", "results")))


def recognition_matches(result: object) -> list[object]:
    """Every ``items[].matches[]`` entry (with its item's category), else a flat ``matches`` list."""
    matches: list[object] = []
    for item in _items_of(result, ("items",)):
        m = _as_mapping(item)
        if m is None:
            continue
        inner = m.get("matches")
        if isinstance(inner, list):
            category = m.get("category")
            for match in inner:
                mm = _as_mapping(match)
                if mm is not None and category and not _pick(mm, "category"):
                    mm = {**mm, "category": category}
                matches.append(mm if mm is not None else match)
        else:
            matches.append(m)
    return matches or _items_of(result, ("matches",))


def for_recognition(result: object) -> str | None:
    """Recognition matches (:func:`recognition_matches`)."""
    return _join("Распознано на фото: ", recognition_matches(result))


def build_response_description(kind: str, result: object) -> str | None:
    """``kind``: ``stylist`` or ``recognition``; anything else (a plain answer) → None."""
    if kind == "stylist":
        return for_stylist(result)
    if kind == "recognition":
        return for_recognition(result)
    return None
