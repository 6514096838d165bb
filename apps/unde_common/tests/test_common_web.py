"""The shared request edge of every FastAPI app (unde_common.web via create_app): strict JSON, body
size limits checked while the body streams, 503 + Retry-After for a store that is down, a neutral 500."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import BaseModel

from unde_common.db import DatabaseUnavailableError
from unde_common.health import create_app
from unde_common.settings import HttpServiceSettings
from unde_testkit.service_auth import ServiceTokenAuth, caller_headers, service_client
from unde_testkit.testing import LoopbackServer, redis_server

pytestmark = pytest.mark.timeout(60)


class Item(BaseModel):
    x: float
    name: str = ""


def make_app(**kwargs: object) -> FastAPI:
    settings = HttpServiceSettings(app_name="demo", port=8000, max_request_bytes=1000)
    app = create_app("demo", settings, **kwargs)  # type: ignore[arg-type]

    @app.post("/items")
    async def items(item: Item) -> dict[str, object]:
        return {"x": item.x, "name": item.name}

    @app.post("/big")
    async def big(item: Item) -> dict[str, object]:
        return {"len": len(item.name)}

    @app.post("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail at 10.1.0.12:5432")

    @app.post("/db-down")
    async def db_down() -> None:
        raise DatabaseUnavailableError("production_db: OperationalError: connection refused 10.1.0.8")

    return app


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b'{"x": NaN}', 422, "NaN"),
        (b'{"x": Infinity}', 422, "Infinity"),
        (b'{"x": -Infinity}', 422, "-Infinity"),
        (b'{"x": 1e400}', 422, "overflows"),
        (b'{"x": -1e400}', 422, "overflows"),
        (b'{"x": 1, "name": "\\ud800"}', 422, "surrogate"),
        (b'{"x": 1, "\\udfff": 2}', 422, "surrogate"),
        (b'{"x": 1, "name": "\xff\xfe"}', 400, "UTF-8"),
        (b'{"x": 1, "name": "\xed\xa0\x80"}', 400, "UTF-8"),  # a surrogate encoded as raw bytes
    ],
)
def test_strict_json_refused_naming_the_problem(body: bytes, status: int, needle: str) -> None:
    with service_client(make_app()) as client:
        r = client.post("/items", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        assert needle in r.text
        # without a content type: the same refusal (persona parses bodies whatever their type)
        assert client.post("/items", content=body).status_code == status


def test_deep_nesting_is_a_4xx() -> None:
    app = make_app(body_limits={"/items": 100_000})
    with service_client(app) as client:
        r = client.post("/items", content=b"[" * 5000 + b'"\\u0041"' + b"]" * 5000)
        assert r.status_code == 422 and "nested too deeply" in r.text
        # not parsed by the guard (nothing suspect in it): FastAPI's own answer, still no 5xx
        assert client.post("/items", content=b"[" * 5000 + b"]" * 5000).status_code in (400, 422)


def test_valid_json_passes_unchanged() -> None:
    with service_client(make_app()) as client:
        ok = client.post("/items", json={"x": 1.5e300, "name": "caf\u00e9 \U0001f600 \\u NaN-ish"})
        assert ok.status_code == 200
        assert ok.json() == {"x": 1.5e300, "name": "caf\u00e9 \U0001f600 \\u NaN-ish"}
        # an escaped surrogate *pair* is one valid code point
        json_type = {"content-type": "application/json"}
        pair = client.post("/items", content=b'{"x": 2, "name": "\\ud83d\\ude00"}', headers=json_type)
        assert pair.status_code == 200 and pair.json()["name"] == "\U0001f600"
        # a syntax error stays FastAPI's 422
        assert client.post("/items", content=b'{"x": 1e400', headers=json_type).status_code == 422


def test_body_limit_default_and_per_route() -> None:
    app = make_app(body_limits={"/big": 5000})
    with service_client(app) as client:
        name = "a" * 2000
        r = client.post("/items", json={"x": 1, "name": name})
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
        assert client.post("/big", json={"x": 1, "name": name}).json() == {"len": 2000}
        assert client.post("/big", json={"x": 1, "name": "a" * 6000}).status_code == 413

        def chunks() -> Iterator[bytes]:
            yield b'{"x": 1, "name": "'
            for _ in range(10):
                yield b"a" * 200
            yield b'"}'

        # no Content-Length (chunked): refused while streaming
        assert client.post("/items", content=chunks()).status_code == 413


def test_huge_body_refused_without_reading_it_all_over_a_real_socket() -> None:
    settings = HttpServiceSettings(app_name="demo", port=8000)  # the default limit: 1 MiB
    app = create_app("demo", settings)

    @app.post("/items")
    async def items(item: Item) -> dict[str, float]:
        return {"x": item.x}

    server = LoopbackServer(app)
    server.start()
    try:
        # Content-Length says 64 MB: the answer comes before a byte of the body is sent
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: {caller_headers()['Authorization']}\r\n".encode()
                + b"Content-Length: 67108864\r\n\r\n"
            )
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413")

        sent = 0

        def stream() -> Iterator[bytes]:
            nonlocal sent
            yield b'{"x": 1, "name": "'
            for _ in range(1024):  # 64 MiB in 64 KiB chunks, chunked encoding
                sent += 65536
                yield b"a" * 65536
            yield b'"}'

        with httpx.Client(base_url=server.url, auth=ServiceTokenAuth(), timeout=10) as client:
            try:
                r = client.post("/items", content=stream())
                assert r.status_code == 413
            except httpx.HTTPError:
                pass  # the server may close the connection while the client still writes
            assert sent < 16 * 1024 * 1024, sent
            # the server still serves: neither crashed nor stuck on the refused body
            assert client.post("/items", json={"x": 2}).json() == {"x": 2}
            for body in (b'{"x": NaN}', b'{"x": "\\ud800"}', b"\xff"):
                r = client.post("/items", content=body, headers={"content-type": "application/json"})
                assert r.status_code in (400, 422)
            assert client.post("/items", json={"x": 3}).json() == {"x": 3}  # same connection, not reset
    finally:
        server.stop()


def test_unhandled_exception_is_a_neutral_500() -> None:
    with service_client(make_app(), raise_server_exceptions=False) as client:
        r = client.post("/boom")
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error", "detail": "internal error"}
    assert "10.1.0.12" not in r.text and "Traceback" not in r.text


def test_database_unavailable_is_503_with_retry_after() -> None:
    with service_client(make_app()) as client:
        r = client.post("/db-down")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"] == "database_unavailable" and "10.1.0.8" not in r.text


def test_redis_stopped_is_503_and_back_within_a_second(tmp_path: Path) -> None:
    settings = HttpServiceSettings(app_name="demo", port=8000, store_retry_after_s=2)
    app = create_app("demo", settings)
    clients: list[aioredis.Redis] = []

    @app.post("/count")
    async def count() -> dict[str, int]:
        return {"n": int(await clients[0].incr("n"))}

    with service_client(app) as client, redis_server(tmp_path / "redis") as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        clients.append(aioredis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2))
        assert client.post("/count").json() == {"n": 1}
    with service_client(app) as client:
        clients[0] = aioredis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
        # the Redis is stopped now
        r = client.post("/count")
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.json()["error"] == "redis_unavailable" and "127.0.0.1" not in r.text
        # it comes back on the same port: served again within a second
        with redis_server(tmp_path / "redis2", port=port):
            deadline = time.monotonic() + 1.0
            while (r := client.post("/count")).status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert r.status_code == 200 and r.json() == {"n": 1}
