"""GeoResolver: GPS (+ the app's indoor floor) → mall, floor, nearest store.

Data source: ``data/malls.json`` shipped with the app — the mall directory (centre, radius,
timezone, opening hours, floors) and the positions of the catalog brands' stores in each mall.
The production DB has no store geometry, so the directory is versioned with the code and updated
by a release (it changes a few times a year). A ``mall_id`` from the app wins when it is known.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["Mall", "Resolved", "Store", "directory", "haversine_m", "resolve"]

NEAR_STORE_M = 60.0


@dataclass(frozen=True, slots=True)
class Store:
    id: str
    name: str
    brand: str | None
    floor: int
    lat: float
    lng: float


@dataclass(frozen=True, slots=True)
class Mall:
    id: str
    name: str
    country: str
    city: str
    timezone: str
    lat: float
    lng: float
    radius_m: float
    floors: tuple[int, ...]
    hours: dict[str, tuple[str, str]]
    stores: tuple[Store, ...]


@dataclass(frozen=True, slots=True)
class Resolved:
    mall: Mall | None
    near_store: Store | None
    floor: int | None
    distance_m: float | None


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def _mall(raw: dict[str, Any]) -> Mall:
    return Mall(
        id=raw["id"],
        name=raw["name"],
        country=raw["country"],
        city=raw["city"],
        timezone=raw["timezone"],
        lat=float(raw["lat"]),
        lng=float(raw["lng"]),
        radius_m=float(raw["radius_m"]),
        floors=tuple(raw["floors"]),
        hours={d: (h[0], h[1]) for d, h in raw["hours"].items()},
        stores=tuple(
            Store(s["id"], s["name"], s.get("brand"), int(s["floor"]), float(s["lat"]), float(s["lng"]))
            for s in raw["stores"]
        ),
    )


@cache
def directory() -> dict[str, Mall]:
    raw = json.loads(resources.files("context_agent").joinpath("data/malls.json").read_text("utf-8"))
    return {m["id"]: _mall(m) for m in raw["malls"]}


def resolve(lat: float, lng: float, mall_id: str | None = None, floor: int | None = None) -> Resolved:
    malls = directory()
    mall = malls.get(mall_id) if mall_id else None
    distance: float | None = None
    if mall is None:
        best = min(malls.values(), key=lambda m: haversine_m(lat, lng, m.lat, m.lng))
        distance = haversine_m(lat, lng, best.lat, best.lng)
        mall = best if distance <= best.radius_m else None
    else:
        distance = haversine_m(lat, lng, mall.lat, mall.lng)
    if mall is None:
        return Resolved(None, None, None, distance)
    candidates = [s for s in mall.stores if floor is None or s.floor == floor]
    near: Store | None = None
    if candidates:
        nearest = min(candidates, key=lambda s: haversine_m(lat, lng, s.lat, s.lng))
        if haversine_m(lat, lng, nearest.lat, nearest.lng) <= NEAR_STORE_M:
            near = nearest
    resolved_floor = floor if floor is not None else (near.floor if near else None)
    return Resolved(mall, near, resolved_floor, round(distance, 1))
