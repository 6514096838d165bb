"""WeatherAPI.com's ``/v1/forecast.json`` simulated on loopback for the context agent's tests
(https://www.weatherapi.com/docs/): strict like the real API, with fault modes and a record of
every request it got (each one is a paid call in production)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FORECAST", "WEATHER_ERRORS", "WEATHER_KEY", "WeatherSimulator", "weather_error"]

FORECAST = {
    "location": {"name": "Dubai"},
    "current": {
        "temp_c": 28.4,
        "feelslike_c": 31.2,
        "humidity": 65,
        "condition": {"text": "Sunny", "code": 1000},
    },
    "forecast": {"forecastday": [{"astro": {"sunset": "06:23 PM", "sunrise": "06:33 AM"}}]},
}


#: WeatherAPI error answers, as documented at https://www.weatherapi.com/docs/error-codes/
WEATHER_ERRORS = {
    1002: (401, "API key not provided."),
    1003: (400, "Parameter 'q' not provided."),
    1005: (400, "API request url is invalid"),
    1006: (400, "No location found matching parameter 'q'"),
    2006: (401, "API key provided is invalid"),
    2007: (403, "API key has exceeded calls per month quota."),
    2008: (403, "API key has been disabled."),
    9999: (400, "Internal application error."),
}
WEATHER_KEY = "wk-123"


def weather_error(code: int) -> JSONResponse:
    status, message = WEATHER_ERRORS[code]
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class WeatherSimulator:
    """WeatherAPI's ``/v1/forecast.json`` on loopback, strict like the real one: a missing or
    unknown key, a missing ``q``, a ``q`` that is not "lat,lng" and any other path get the
    documented 4xx error body. Modes: ok | quota_exceeded (403 2007) | key_disabled (403 2008) |
    internal_error (400 9999) | bad_gateway (a front end's 502 HTML page) | malformed | slow |
    fixture (answer ``fixture_response``). ``requests`` records what each call sent."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hits = 0
        self.last_query: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.fixture_response: dict[str, Any] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/forecast.json", self.forecast),
                Route("/{path:path}", self.unknown, methods=["GET", "POST"]),
            ]
        )

    async def unknown(self, request: Request) -> Response:
        return weather_error(1005)

    async def forecast(self, request: Request) -> Response:
        self.hits += 1
        self.last_query = dict(request.query_params)
        body = await request.body()
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": json.loads(body) if body else None,
            }
        )
        query = request.query_params
        if "key" not in query:
            return weather_error(1002)
        if query["key"] != WEATHER_KEY:
            return weather_error(2006)
        if not query.get("q"):
            return weather_error(1003)
        try:
            lat, lng = (float(part) for part in query["q"].split(","))
        except ValueError:
            return weather_error(1006)
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):
            return weather_error(1006)
        if self.mode == "quota_exceeded":
            return weather_error(2007)
        if self.mode == "key_disabled":
            return weather_error(2008)
        if self.mode == "internal_error":
            return weather_error(9999)
        if self.mode == "bad_gateway":
            return Response(
                b"<html><body>502 Bad Gateway</body></html>", status_code=502, media_type="text/html"
            )
        if self.mode == "malformed":
            return Response(b'{"current": {"temp_c": ', media_type="application/json")
        if self.mode == "slow":
            await asyncio.sleep(0.6)
        if self.mode == "fixture":
            return JSONResponse(self.fixture_response["json"], status_code=self.fixture_response["status"])
        return JSONResponse(FORECAST)
