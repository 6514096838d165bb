"""Cultural calendar: the static JSON (Ramadan/Eid dates, UAE and Kazakhstan public holidays for
2026-2027) + sunset → the ``cultural`` block, worded by the user's sensitivity level:

- ``high``: named naturally — ``active_period``, ``iftar_time`` (and ``next_meal_break``),
  holidays by name;
- ``medium`` (default): taken into account, neutral words only — ``next_meal_break`` /
  ``is_pre_meal_break``, never ``iftar``;
- ``low``: not mentioned — no ``active_period``, no holiday names — but the schedule is still
  respected (``constraints: ["no_daytime_food_suggestions"]`` during Ramadan days).

Parsed calendars are cached in-process for 24 h (``cultural_cache_ttl``).
"""

from __future__ import annotations

import json
import time as _time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from context_agent.sun import sunset_utc

__all__ = ["PRE_MEAL_BREAK_MINUTES", "Calendar", "CulturalCalendar"]

PRE_MEAL_BREAK_MINUTES = 90
HOLIDAY_HORIZON_DAYS = 7


@dataclass(frozen=True, slots=True)
class Period:
    id: str
    start: date
    end: date
    countries: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Holiday:
    day: date
    name: str
    period: str
    countries: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Calendar:
    periods: tuple[Period, ...]
    holidays: tuple[Holiday, ...]

    @classmethod
    def load(cls) -> Calendar:
        raw = json.loads(
            resources.files("context_agent").joinpath("data/cultural_calendar.json").read_text("utf-8")
        )
        return cls(
            tuple(
                Period(
                    p["id"],
                    date.fromisoformat(p["start"]),
                    date.fromisoformat(p["end"]),
                    tuple(p["countries"]),
                )
                for p in raw["periods"]
            ),
            tuple(
                Holiday(date.fromisoformat(h["date"]), h["name"], h["period"], tuple(h["countries"]))
                for h in raw["holidays"]
            ),
        )


class CulturalCalendar:
    def __init__(self, ttl_s: float = 86400) -> None:
        self.ttl_s = ttl_s
        self._calendar: Calendar | None = None
        self._loaded = 0.0

    def calendar(self) -> Calendar:
        if self._calendar is None or _time.monotonic() - self._loaded > self.ttl_s:
            self._calendar = Calendar.load()
            self._loaded = _time.monotonic()
        return self._calendar

    def frame(
        self, local: datetime, country: str, lat: float, lng: float, tz: ZoneInfo, level: str
    ) -> dict[str, Any]:
        cal = self.calendar()
        today = local.date()
        period = next((p for p in cal.periods if country in p.countries and p.start <= today <= p.end), None)
        meal_break: str | None = None
        pre_break = False
        constraints: list[str] = []
        if period is not None and period.id == "ramadan":
            sunset = sunset_utc(today, lat, lng)
            if sunset is not None:
                sunset_local = sunset.astimezone(tz)
                if local <= sunset_local:
                    meal_break = sunset_local.strftime("%H:%M")
                    pre_break = sunset_local - local <= timedelta(minutes=PRE_MEAL_BREAK_MINUTES)
                    constraints.append("no_daytime_food_suggestions")
                else:
                    tomorrow = sunset_utc(today + timedelta(days=1), lat, lng)
                    if tomorrow is not None and today + timedelta(days=1) <= period.end:
                        meal_break = tomorrow.astimezone(tz).strftime("%H:%M")
        holidays = [
            h
            for h in cal.holidays
            if country in h.countries and today <= h.day <= today + timedelta(days=HOLIDAY_HORIZON_DAYS)
        ]
        out: dict[str, Any] = {"sensitivity_level": level}
        if level == "high":
            out["active_period"] = period.id if period else None
            out["iftar_time"] = meal_break if period and period.id == "ramadan" else None
        elif level == "medium":
            out["active_period"] = period.id if period else None
        else:
            out["active_period"] = None
        out["next_meal_break"] = meal_break
        out["is_pre_meal_break"] = pre_break
        if level == "low":
            out["nearby_holidays"] = []
            out["constraints"] = constraints
        else:
            out["nearby_holidays"] = [
                {
                    "date": h.day.isoformat(),
                    "period": h.period,
                    "days_until": (h.day - today).days,
                    **({"name": h.name} if level == "high" else {}),
                }
                for h in holidays
            ]
        return out
