"""WeatherAPI.com client (``GET {WEATHER_API_URL}/forecast.json?key=…&q=lat,lng&days=1&aqi=no&alerts=no``,
https://www.weatherapi.com/docs/ "Forecast API"): current temperature, feels-like, humidity,
condition and today's sunset.

Errors come as ``{"error": {"code": N, "message": "..."}}`` under a 4xx status
(https://www.weatherapi.com/docs/error-codes/): 401 1002 key not provided, 401 2006 key invalid,
403 2007 monthly call quota exceeded, 403 2008 key disabled, 403 2009 plan has no access, 400 1003
/ 1005 / 1006 bad request or unknown location, 400 9999 internal application error. None of them
is retried (a repeat gets the same answer); the key-level ones (2006, 2007, 2008) pause calls for
``key_pause_s``: the caller serves its cached or stale copy meanwhile, without spending requests
the API refuses anyway."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError, RetryPolicy

__all__ = [
    "WeatherApiError",
    "WeatherClient",
    "WeatherPoint",
    "condition_name",
    "parse_forecast",
    "weather_point",
]

#: WeatherAPI error codes about the key or the account (not the request): every call fails alike
KEY_ERRORS = {2006: "API key invalid", 2007: "monthly call quota exceeded", 2008: "API key disabled"}


class WeatherApiError(RuntimeError):
    """WeatherAPI refused the call; ``code`` is its error code (None: not a WeatherAPI error body)."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _error_code(body: str | None) -> tuple[int | None, str]:
    """``(code, message)`` of a WeatherAPI error body, ``(None, "")`` when it is not one."""
    try:
        error = json.loads(body or "")["error"]
        return int(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return None, ""


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


@dataclass(frozen=True, slots=True)
class WeatherPoint:
    """Where one WeatherAPI call answers for: its cache key and the point asked for."""

    key: str
    lat: float
    lng: float


def weather_point(
    lat: float, lng: float, *, grid_deg: float, mall: tuple[str, float, float] | None = None
) -> WeatherPoint:
    """The point whose weather a request at (lat, lng) is served: every WeatherAPI call is paid,
    so requests share calls. Inside a mall (``mall`` = id, lat, lng) it is the mall's own point,
    keyed by the mall; elsewhere the centre of the ``grid_deg`` cell the point falls into
    (0.1° ≈ 11 km, far finer than a forecast changes), keyed by the cell."""
    if mall is not None:
        mall_id, mall_lat, mall_lng = mall
        return WeatherPoint(f"mall:{mall_id}", round(mall_lat, 2), round(mall_lng, 2))
    row, col = round(lat / grid_deg), round(lng / grid_deg)
    cell_lat = max(-90.0, min(90.0, round(row * grid_deg, 6)))
    cell_lng = max(-180.0, min(180.0, round(col * grid_deg, 6)))
    return WeatherPoint(f"cell:{grid_deg:g}:{row}:{col}", cell_lat, cell_lng)


class WeatherClient:
    def __init__(
        self, base_url: str, api_key: SecretStr, *, timeout_s: float = 2.0, key_pause_s: float = 600.0
    ) -> None:
        self.key = api_key
        self.key_pause_s = key_pause_s
        self._paused_until = 0.0
        self._pause_reason = ""
        self.http = AsyncProviderClient(
            ProviderConfig(
                name="weatherapi",
                base_url=base_url.rstrip("/"),
                connect_timeout_s=min(1.0, timeout_s),
                read_timeout_s=timeout_s,
                write_timeout_s=timeout_s,
                retry=RetryPolicy(max_attempts=2, backoff_base_s=0.2, max_retry_after_s=5),
                # two attempts of timeout_s each, the backoff between them included
                deadline_s=2 * timeout_s,
            )
        )

    async def current(self, lat: float, lng: float) -> dict[str, Any]:
        if time.monotonic() < self._paused_until:
            left = self._paused_until - time.monotonic()
            raise WeatherApiError(f"weatherapi: {self._pause_reason}; calls paused for {left:.0f}s more")
        params = {
            "key": self.key.get_secret_value(),
            "q": f"{lat:.3f},{lng:.3f}",
            "days": 1,
            "aqi": "no",
            "alerts": "no",
        }
        try:
            data = await self.http.get_json("/forecast.json", params=params)
        except ProviderError as exc:
            raise self._refusal(exc) from exc
        return parse_forecast(data)

    def _refusal(self, exc: ProviderError) -> Exception:
        """A WeatherApiError naming WeatherAPI's error code, pausing calls on a key-level one."""
        code, message = _error_code(exc.body) if exc.status is not None and exc.status < 500 else (None, "")
        if code is None:
            return exc
        what = KEY_ERRORS.get(code)
        if what is not None:
            self._pause_reason = f"{what} (error {code}: {message})"
            self._paused_until = time.monotonic() + self.key_pause_s
            return WeatherApiError(f"weatherapi: {self._pause_reason}", code=code, status=exc.status)
        return WeatherApiError(
            f"weatherapi: HTTP {exc.status} error {code}: {message}", code=code, status=exc.status
        )

    async def aclose(self) -> None:
        await self.http.aclose()
