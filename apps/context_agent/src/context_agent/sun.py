"""Sunset time (NOAA solar equations, ±1-2 min): the Maghrib / iftar time the cultural calendar
uses for ``next_meal_break`` during Ramadan."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

__all__ = ["sunset_utc"]


def sunset_utc(day: date, lat: float, lng: float) -> datetime | None:
    """Sunset on ``day`` at (lat, lng) in UTC; None where the sun does not set (polar day/night)."""
    n = day.timetuple().tm_yday
    gamma = 2 * math.pi / 365 * (n - 1)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    phi = math.radians(lat)
    cos_ha = math.cos(math.radians(90.833)) / (math.cos(phi) * math.cos(decl)) - math.tan(phi) * math.tan(
        decl
    )
    if not -1.0 <= cos_ha <= 1.0:
        return None
    ha = math.degrees(math.acos(cos_ha))
    minutes = 720 - 4 * (lng - ha) - eqtime
    return datetime.combine(day, time(0, 0), tzinfo=UTC) + timedelta(minutes=minutes)
