"""Service-to-service authentication (unde_common.auth) on real servers: a create_app service over
uvicorn on loopback, a worker's metrics server, a real Redis stopped under /health."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import WebSocket
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter
from starlette.websockets import WebSocketDisconnect

from unde_common.auth import ServiceAuth, start_metrics_server, token_digest
from unde_common.health import create_app, redis_check
from unde_common.settings import HttpServiceSettings, SettingsError
from unde_testkit.testing import LoopbackServer, free_port, redis_server

pytestmark = pytest.mark.timeout(60)

CALLER = "recognition-token-for-this-test"
OTHER = "scraper-token-for-this-test"
MONITOR = "monitoring-token-for-this-test"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def settings(**overrides: Any) -> HttpServiceSettings:
    values: dict[str, Any] = {
        "app_name": "demo",
        "port": 8000,
        "service_callers": {"recognition": token_digest(CALLER)},
        "service_monitoring_sha256": token_digest(MONITOR),
        **overrides,
    }
    return HttpServiceSettings(**values)


def demo_app(**overrides: Any) -> Any:
    business = overrides.pop("business_auth", True)
    app = create_app("demo", settings(**overrides), business_auth=business)

    @app.post("/items")
    async def items(body: dict[str, Any]) -> dict[str, Any]:
        return {"got": body}

    @app.websocket("/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    return app


@pytest.fixture
def served() -> Iterator[str]:
    with LoopbackServer(demo_app()) as server:
        yield server.url


def test_no_token_is_401_with_a_bearer_challenge(served: str) -> None:
    for path in ("/items", "/health", "/metrics", "/health/live", "/openapi.json", "/docs"):
        r = httpx.post(served + path, json={}) if path == "/items" else httpx.get(served + path)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == 'Bearer realm="unde"', path
    basic = httpx.post(served + "/items", json={}, headers={"Authorization": f"Basic {CALLER}"})
    assert basic.status_code == 401


def test_unknown_token_is_401_and_logged_without_the_token(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "unde_common.auth")
    r = httpx.post(served + "/items", json={"a": 1}, headers=bearer("guessed-token"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="unde", error="invalid_token"'
    assert r.json() == {"error": "unauthorized", "detail": "unknown token"}
    refused = [rec for rec in caplog.records if rec.msg == "service call refused"]
    assert [(rec.caller, rec.path, rec.status) for rec in refused] == [("unknown", "/items", 401)]  # type: ignore[attr-defined]
    assert all("guessed-token" not in str(rec.__dict__) for rec in caplog.records)


def test_monitoring_token_on_a_business_route_is_403(served: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "unde_common.auth")
    r = httpx.post(served + "/items", json={}, headers=bearer(MONITOR))
    assert r.status_code == 403 and "www-authenticate" not in r.headers
    assert httpx.get(served + "/openapi.json", headers=bearer(MONITOR)).status_code == 403
    assert [rec.caller for rec in caplog.records if rec.msg == "service call refused"] == ["monitoring"] * 2  # type: ignore[attr-defined]


def test_caller_token_on_health_and_metrics_is_403(served: str) -> None:
    for path in ("/health", "/health/live", "/metrics"):
        assert httpx.get(served + path, headers=bearer(CALLER)).status_code == 403, path


def test_the_right_caller_and_monitoring_are_served(served: str) -> None:
    r = httpx.post(served + "/items", json={"a": 1}, headers=bearer(CALLER))
    assert r.status_code == 200 and r.json() == {"got": {"a": 1}}
    assert httpx.get(served + "/openapi.json", headers=bearer(CALLER)).status_code == 200
    assert httpx.get(served + "/health", headers=bearer(MONITOR)).json()["status"] == "ok"
    assert httpx.get(served + "/health/live", headers=bearer(MONITOR)).status_code == 200
    metrics = httpx.get(served + "/metrics", headers=bearer(MONITOR)).text
    # the refusals are counted like any answer
    assert 'demo_http_requests_total{method="POST",route="/items",status="200"} 1.0' in metrics
    # a token that is known elsewhere (another service's caller) is unknown here
    assert httpx.post(served + "/items", json={}, headers=bearer(OTHER)).status_code == 401


def test_an_unknown_caller_body_is_never_read(served: str) -> None:
    host, port = served.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 67108864\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 401")


def test_no_callers_configured_refuses_every_business_call(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pydantic-settings merges a dict given to the constructor into the environment's: clear that
    monkeypatch.delenv("SERVICE_CALLERS", raising=False)
    caplog.set_level(logging.INFO, "unde_common.auth")
    app = demo_app(service_callers={})
    assert any("every business call is refused" in rec.msg for rec in caplog.records)
    with LoopbackServer(app) as server:
        assert httpx.post(server.url + "/items", json={}, headers=bearer(CALLER)).status_code == 401
        assert httpx.post(server.url + "/items", json={}, headers=bearer(MONITOR)).status_code == 403
        assert httpx.get(server.url + "/health", headers=bearer(MONITOR)).status_code == 200


def test_no_monitoring_digest_refuses_health_and_metrics(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "unde_common.auth")
    app = demo_app(service_monitoring_sha256="")
    assert any("refuse every caller" in rec.msg for rec in caplog.records)
    with LoopbackServer(app) as server:
        for token in (MONITOR, CALLER):
            assert httpx.get(server.url + "/metrics", headers=bearer(token)).status_code in (401, 403)
        assert httpx.post(server.url + "/items", json={}, headers=bearer(CALLER)).status_code == 200


def test_public_business_routes_keep_health_and_metrics_for_monitoring() -> None:
    with LoopbackServer(demo_app(business_auth=False)) as server:
        assert httpx.post(server.url + "/items", json={"a": 1}).status_code == 200
        assert httpx.get(server.url + "/metrics").status_code == 401
        assert httpx.get(server.url + "/metrics", headers=bearer(CALLER)).status_code == 403
        assert httpx.get(server.url + "/metrics", headers=bearer(MONITOR)).status_code == 200


def test_websocket_without_a_known_caller_is_closed_before_accept() -> None:
    with TestClient(demo_app()) as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/stream"):
            pass
        assert refused.value.code == 1008
        with client.websocket_connect("/stream", headers=bearer(CALLER)) as ws:
            assert ws.receive_text() == "hello"


def test_settings_refuse_bad_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_CALLERS", '{"monitoring": "' + token_digest(MONITOR) + '"}')
    with pytest.raises(SettingsError, match="SERVICE_CALLERS") as err:
        HttpServiceSettings.load(port=8000)
    assert "/health and /metrics only" in str(err.value)
    monkeypatch.setenv("SERVICE_CALLERS", '{"recognition": "plaintext-token"}')
    with pytest.raises(SettingsError, match="SERVICE_CALLERS") as err:
        HttpServiceSettings.load(port=8000)
    assert "plaintext-token" not in str(err.value) and "64 hex digits" in str(err.value)
    monkeypatch.setenv("SERVICE_CALLERS", "{}")
    monkeypatch.setenv("SERVICE_MONITORING_SHA256", "abc")
    with pytest.raises(SettingsError, match="SERVICE_MONITORING_SHA256"):
        HttpServiceSettings.load(port=8000)
    upper = token_digest(MONITOR).upper()
    monkeypatch.setenv("SERVICE_MONITORING_SHA256", upper)
    assert HttpServiceSettings.load(port=8000).service_monitoring_sha256 == upper.lower()


def test_health_with_redis_stopped_names_no_host_port_or_exception(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "unde_common.health")
    with contextlib.ExitStack() as running:
        redis = running.enter_context(redis_server(tmp_path / "redis", password="s3cret-pw"))
        port = redis.rsplit(":", 1)[1].split("/")[0]
        app = create_app("demo", settings(health_check_timeout_s=1.0), {"redis": redis_check(redis + "/3")})
        with LoopbackServer(app) as server:
            up = httpx.get(server.url + "/health", headers=bearer(MONITOR))
            assert up.status_code == 200, up.text
            running.close()  # the real Redis server stops; the service keeps running
            down = httpx.get(server.url + "/health", headers=bearer(MONITOR))
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "fail"
    assert body["checks"]["redis"]["status"] == "fail" and body["checks"]["redis"]["reason"] == "error"
    assert set(body["checks"]["redis"]) == {"status", "reason", "duration_ms"}
    for leak in ("127.0.0.1", "localhost", port, "s3cret", "Error", "refused", "Connection"):
        assert leak not in down.text, leak
    logged = [rec for rec in caplog.records if rec.msg == "health check failed"]
    assert logged and logged[-1].check == "redis" and "Error" in logged[-1].error  # type: ignore[attr-defined]


def test_worker_metrics_server_answers_monitoring_only() -> None:
    registry = CollectorRegistry()
    Counter("demo_jobs", "Jobs.", registry=registry).inc()
    port = free_port()
    server, _ = start_metrics_server(registry, port, "127.0.0.1", token_digest(MONITOR))
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        bare = httpx.get(url)
        assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(url, headers=bearer("guessed")).status_code == 401
        assert httpx.get(url, headers=bearer(CALLER)).status_code == 401  # no caller is known here
        ok = httpx.get(url, headers=bearer(MONITOR))
        assert ok.status_code == 200 and "demo_jobs_total 1.0" in ok.text
    finally:
        server.shutdown()
        server.server_close()


def test_middleware_is_usable_on_its_own() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(_: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/hello", hello)])
    guarded = ServiceAuth(app, callers={"recognition": token_digest(CALLER)}, monitoring_sha256="")
    with TestClient(guarded) as client:
        assert client.get("/hello").status_code == 401
        assert client.get("/hello", headers=bearer(CALLER)).text == "hi"
