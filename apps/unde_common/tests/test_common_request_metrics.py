"""create_app(asgi_metrics=True): the pure ASGI RequestMetrics middleware records exactly what the
BaseHTTPMiddleware records (same metric names and labels) for the same traffic."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from unde_common.health import create_app
from unde_common.metrics import AppMetrics
from unde_common.settings import HttpServiceSettings
from unde_testkit.service_auth import service_client


def traffic(asgi_metrics: bool) -> tuple[dict[tuple[str, ...], float], dict[tuple[str, ...], float]]:
    app = create_app(
        "demo_app",
        HttpServiceSettings(app_name="demo_app", port=8000),
        metrics=AppMetrics("demo_app"),
        asgi_metrics=asgi_metrics,
    )

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.post("/boom")
    async def boom() -> dict[str, Any]:
        raise RuntimeError("boom")

    with service_client(app, raise_server_exceptions=False) as client:
        for i in range(3):
            assert client.get(f"/items/{i}").status_code == 200
        assert client.get("/items/x").status_code == 422
        assert client.get("/nowhere").status_code == 404
        assert client.post("/boom").status_code == 500
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/live").status_code == 200
        text = client.get("/metrics").text
    counts: dict[tuple[str, ...], float] = {}
    durations: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "demo_app_http_requests_total":
                counts[(s.labels["method"], s.labels["route"], s.labels["status"])] = s.value
            if s.name == "demo_app_http_request_duration_seconds_count":
                durations[(s.labels["method"], s.labels["route"])] = s.value
    return counts, durations


@pytest.mark.parametrize("asgi", [False, True])
def test_request_metrics(asgi: bool) -> None:
    counts, durations = traffic(asgi)
    assert counts == {
        ("GET", "/items/{item_id}", "200"): 3,
        ("GET", "/items/{item_id}", "422"): 1,
        ("GET", "<unmatched>", "404"): 1,
        ("POST", "/boom", "500"): 1,
        ("GET", "/health/live", "200"): 2,
    }
    assert durations == {
        ("GET", "/items/{item_id}"): 4,
        ("GET", "<unmatched>"): 1,
        ("POST", "/boom"): 1,
        ("GET", "/health/live"): 2,
    }
