from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from unde_common.db import PoolConfig, acheck, create_async_pool
from unde_common.health import create_app, redis_check
from unde_common.settings import HttpServiceSettings
from unde_testkit.service_auth import service_client
from unde_testkit.testing import PostgresHandle, free_port

pytestmark = pytest.mark.timeout(60)


def settings(timeout: float = 0.5) -> HttpServiceSettings:
    return HttpServiceSettings(app_name="demo", port=8000, health_check_timeout_s=timeout)


def _duration(r: Any, check: str) -> dict[str, Any]:
    return {"duration_ms": r.json()["checks"][check]["duration_ms"]}


def test_all_checks_pass() -> None:
    async def async_ok() -> None:
        await asyncio.sleep(0)

    app = create_app("demo", settings(), {"sync": lambda: None, "async": async_ok}, version="9.9")
    with service_client(app) as client:
        r = client.get("/health")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ok" and body["app"] == "demo" and body["version"] == "9.9"
        assert set(body["checks"]) == {"sync", "async"}
        assert all(c["status"] == "ok" and c["duration_ms"] >= 0 for c in body["checks"].values())
        assert client.get("/health/live").json() == {"status": "ok", "app": "demo"}


def test_failing_and_hanging_checks_give_503_naming_each(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise ConnectionError("db down")

    async def hangs() -> None:
        await asyncio.sleep(30)

    app = create_app("demo", settings(0.3), {"db": broken, "slow": hangs, "fine": lambda: None})
    with service_client(app) as client:
        r = client.get("/health")
        assert r.status_code == 503
        checks = r.json()["checks"]
        assert r.json()["status"] == "fail"
        assert checks["db"] == {
            "status": "fail",
            "reason": "error",
            **{"duration_ms": checks["db"]["duration_ms"]},
        }
        assert checks["slow"]["status"] == "fail" and checks["slow"]["reason"] == "timeout"
        assert "db down" not in r.text  # the exception's text goes to the log only
        logged = {rec.check: rec.error for rec in caplog.records if rec.msg == "health check failed"}  # type: ignore[attr-defined]
        assert logged["db"] == "ConnectionError: db down" and logged["slow"] == "timed out after 0.3s"
        assert checks["fine"]["status"] == "ok"
        # liveness does not depend on the checks
        assert client.get("/health/live").status_code == 200


def test_metrics_endpoint_records_requests_by_route_template() -> None:
    app = create_app("ximilar_gw", settings())

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    with service_client(app) as client:
        for i in range(3):
            assert client.get(f"/items/{i}").status_code == 200
        assert client.get("/items/x").status_code == 422
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == "ximilar_gw_http_requests_total":
                found[(s.labels["route"], s.labels["status"])] = s.value
    assert found[("/items/{item_id}", "200")] == 3
    assert found[("/items/{item_id}", "422")] == 1
    assert "ximilar_gw_app_info" in r.text


def test_redis_check_reports_unreachable_server() -> None:
    app = create_app(
        "voice", settings(2.0), {"redis": redis_check(f"redis://:pw@127.0.0.1:{free_port()}/10")}
    )
    with service_client(app) as client:
        r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["checks"]["redis"] == {"status": "fail", "reason": "error", **_duration(r, "redis")}
    assert "127.0.0.1" not in r.text and "pw" not in r.text and "Error" not in r.text


def test_redis_check_against_real_redis(redis_url: str) -> None:
    wrong_password = redis_url.replace(":test-pw@", ":wrong@")
    checks = {"redis": redis_check(redis_url.replace("/0", "/9")), "redis_auth": redis_check(wrong_password)}
    app = create_app("mood_agent", settings(2.0), checks)
    with service_client(app) as client:
        r = client.get("/health")
    assert r.status_code == 503
    checks_out = r.json()["checks"]
    assert checks_out["redis"]["status"] == "ok"
    assert checks_out["redis_auth"]["status"] == "fail" and "wrong" not in r.text


def test_postgres_check_with_lifespan_pool(pg: PostgresHandle) -> None:
    pool = create_async_pool(pg.dsn, app_name="context_agent", config=PoolConfig(min_size=1, max_size=2))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    async def db() -> None:
        await acheck(pool)

    app = create_app("context_agent", settings(2.0), {"production_db": db}, lifespan=lifespan)
    with service_client(app) as client:
        r = client.get("/health")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["production_db"]["status"] == "ok"
