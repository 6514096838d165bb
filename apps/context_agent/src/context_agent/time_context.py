"""TimeContext: the local day of week, part of day, hours until the mall closes, rush hour."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from context_agent.geo import Mall

__all__ = ["DAYS", "part_of_day", "time_context"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: weekend days per country (UAE: Saturday-Sunday since 2022; Kazakhstan: Saturday-Sunday)
WEEKEND = {"AE": (5, 6), "KZ": (5, 6)}


def part_of_day(t: time) -> str:
    if 5 <= t.hour < 12:
        return "morning"
    if 12 <= t.hour < 17:
        return "afternoon"
    if 17 <= t.hour < 22:
        return "evening"
    return "night"


def _hhmm(text: str) -> timedelta:
    h, m = text.split(":")
    return timedelta(hours=int(h), minutes=int(m))


def closes_in_hours(mall: Mall, local: datetime) -> float | None:
    """Hours until closing (0 when closed now); a closing time at or before the opening time is
    after midnight (``01:00``, ``24:00``)."""
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    for offset in (0, -1):  # today's hours, or yesterday's that run past midnight
        day = midnight + timedelta(days=offset)
        hours = mall.hours.get(DAYS[day.weekday()])
        if hours is None:
            continue
        opens, closes = day + _hhmm(hours[0]), day + _hhmm(hours[1])
        if closes <= opens:
            closes += timedelta(days=1)
        if opens <= local < closes:
            return round((closes - local).total_seconds() / 3600, 2)
    return 0.0


def time_context(local: datetime, mall: Mall | None, country: str) -> dict[str, Any]:
    weekday = local.weekday()
    weekend = weekday in WEEKEND.get(country, (5, 6))
    hour = local.hour + local.minute / 60
    rush = (15 <= hour < 21) if weekend else (17 <= hour < 20)
    return {
        "day_of_week": NAMES[weekday],
        "part_of_day": part_of_day(local.time()),
        "mall_closes_in_hours": closes_in_hours(mall, local) if mall else None,
        "is_rush_hour": rush,
    }
