"""OpportunityMatcher: events x compact_preferences (spec 02 §15).

- a sale/promotion of a favourite brand → ``user_favorite_brand``;
- an event whose title/tags match an interest (``korean_thrillers`` → korean + thriller) →
  ``user_loves_<interest>``;
- food events naming one of the user's allergens are dropped;
- at most :data:`MAX_OPPORTUNITIES`, favourite brands first, then interests, then by start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_OPPORTUNITIES", "match"]

MAX_OPPORTUNITIES = 5
SALE_KINDS = frozenset({"sale", "promotion", "discount", "launch"})


def _words(text: str) -> set[str]:
    out = set()
    for w in text.lower().replace("-", " ").replace("_", " ").split():
        w = w.strip(".,!?:;\"'()")
        out.add(w[:-1] if w.endswith("s") and len(w) > 3 else w)
    return out


def match(
    events: Sequence[dict[str, Any]],
    favorite_brands: Sequence[str],
    interests: Sequence[str],
    allergies: Sequence[str],
) -> list[dict[str, Any]]:
    brands = {b.strip().lower() for b in favorite_brands}
    allergens = {a.strip().lower() for a in allergies}
    found: list[tuple[int, str, dict[str, Any]]] = []
    for ev in events:
        payload = ev.get("payload") or {}
        text = " ".join([ev.get("title") or "", " ".join(map(str, payload.get("tags", [])))])
        words = _words(text)
        if allergens & _words(" ".join(map(str, payload.get("contains", [])))) or (allergens & words):
            continue
        store = ev.get("store") or ev.get("brand") or "mall"
        base: dict[str, Any] = {"store": store, "type": ev["kind"]}
        if payload.get("discount"):
            base["discount"] = str(payload["discount"])
        if ev["kind"] not in SALE_KINDS or not payload.get("discount"):
            base["title"] = ev.get("title")
        brand = (ev.get("brand") or ev.get("store") or "").lower()
        if ev["kind"] in SALE_KINDS and brand in brands:
            found.append((0, ev["starts_at"], {**base, "relevance_reason": "user_favorite_brand"}))
            continue
        for interest in interests:
            needed = _words(interest)
            if needed and needed <= words:
                found.append((1, ev["starts_at"], {**base, "relevance_reason": f"user_loves_{interest}"}))
                break
    found.sort(key=lambda f: (f[0], f[1]))
    return [f[2] for f in found[:MAX_OPPORTUNITIES]]
