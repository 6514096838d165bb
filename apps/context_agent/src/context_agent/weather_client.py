"""WeatherAPI.com client (``GET {WEATHER_API_URL}/forecast.json?key=…&q=lat,lng&days=1``):
current temperature, feels-like, humidity, condition and today's sunset."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from unde_common.http import AsyncProviderClient, ProviderConfig, RetryPolicy

__all__ = ["WeatherClient", "condition_name", "parse_forecast"]

#: WeatherAPI condition codes → the frame's short names
_CODES = {
    1000: "clear",
    1003: "partly_cloudy",
    1006: "cloudy",
    1009: "overcast",
    1030: "mist",
    1135: "fog",
    1087: "thunder",
}


def condition_name(code: int, text: str) -> str:
    if code in _CODES:
        return _CODES[code]
    low = text.lower()
    for word, name in (
        ("thunder", "thunder"),
        ("snow", "snow"),
        ("sleet", "snow"),
        ("rain", "rain"),
        ("drizzle", "rain"),
        ("shower", "rain"),
        ("dust", "dust"),
        ("sand", "dust"),
        ("haze", "haze"),
        ("fog", "fog"),
    ):
        if word in low:
            return name
    return low.replace(" ", "_") or "unknown"


def _sunset_24h(text: str) -> str | None:
    try:
        return datetime.strptime(text.strip(), "%I:%M %p").strftime("%H:%M")
    except ValueError:
        return None


def parse_forecast(data: Any) -> dict[str, Any]:
    """The provider's JSON → the frame's ``weather`` block; ValueError naming a missing field."""
    try:
        current = data["current"]
        condition = current["condition"]
        out = {
            "temp_c": round(float(current["temp_c"])),
            "feels_like_c": round(float(current["feelslike_c"])),
            "humidity": int(current["humidity"]),
            "condition": condition_name(int(condition.get("code", 0)), str(condition.get("text", ""))),
            "sunset": None,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"weatherapi: unexpected response ({exc.__class__.__name__}: {exc})") from None
    with contextlib.suppress(KeyError, IndexError, TypeError):
        out["sunset"] = _sunset_24h(data["forecast"]["forecastday"][0]["astro"]["sunset"])
    return out


class WeatherClient:
    def __init__(self, base_url: str, api_key: SecretStr, *, timeout_s: float = 2.0) -> None:
        self.key = api_key
        self.http = AsyncProviderClient(
            ProviderConfig(
                name="weatherapi",
                base_url=base_url.rstrip("/"),
                connect_timeout_s=min(1.0, timeout_s),
                read_timeout_s=timeout_s,
                write_timeout_s=timeout_s,
                retry=RetryPolicy(max_attempts=2, backoff_base_s=0.2, max_retry_after_s=5),
            )
        )

    async def current(self, lat: float, lng: float) -> dict[str, Any]:
        params = {
            "key": self.key.get_secret_value(),
            "q": f"{lat:.3f},{lng:.3f}",
            "days": 1,
            "aqi": "no",
            "alerts": "no",
        }
        return parse_forecast(await self.http.get_json("/forecast.json", params=params))

    async def aclose(self) -> None:
        await self.http.aclose()
