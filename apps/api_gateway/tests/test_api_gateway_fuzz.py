"""The fuzz run of api_gateway (unde_testkit.fuzz): every operation of its OpenAPI (auth, chat,
session, media, account) plus hand-made bodies, sent with a valid user access token, against the
gateway on its real stores with a real orchestrator worker behind dialogue_queue and the S3
stand-in (``GatewayBed``) — no answer is a 5xx, none raises. A second, token-less pass checks
that every protected route answers 401, never 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from unde_testkit.fuzz import fuzz_app
from unde_testkit.gateway_testbed import GatewayBed
from unde_testkit.testing import PostgresHandle, S3Handle

pytestmark = pytest.mark.timeout(900)

#: the fuzz sends hundreds of requests as one user: no bucket may refuse them
UNLIMITED = json.dumps(
    {
        b: {"rate": 1000, "burst": 100000}
        for b in ("auth", "chat", "session", "recognize", "upload", "replay", "products", "account")
    }
)


@pytest.fixture(scope="module")
def bed(
    pg: PostgresHandle, redis_url: str, s3: S3Handle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayBed]:
    s3.client().create_bucket(Bucket="unde-user-media")
    with GatewayBed(pg, redis_url, Path(tmp_path_factory.mktemp("gw_fuzz")), s3=s3) as bed:
        yield bed


def test_fuzz_with_a_user_token_finds_no_5xx(bed: GatewayBed) -> None:
    user = bed.seed_user()
    app = bed.app(RATE_LIMITS=UNLIMITED, DIALOGUE_DEADLINE_S="60")
    with TestClient(app, headers=bed.headers(user)) as client:
        paths = set(client.get("/openapi.json").json()["paths"])
        report = fuzz_app(client, "api_gateway", max_examples=15)
    print(report.summary())
    assert {"/api/v1/chat", "/api/v1/auth/device", "/api/v1/session/start", "/api/v1/session/end"} <= paths
    assert report.statuses[200] > 0  # valid cases got through the token check and were served
    assert report.findings == [], report.summary()


def test_without_a_token_every_api_route_is_401(bed: GatewayBed) -> None:
    with TestClient(bed.app()) as client:
        spec = client.get("/openapi.json").json()
        open_routes = {"/api/v1/auth/device", "/api/v1/auth/refresh"}
        for path, item in spec["paths"].items():
            if not path.startswith("/api/v1/") or path in open_routes:
                continue
            url = path.replace("{", "").replace("}", "")  # any value: the token is checked first
            for method in item:
                r = client.request(method.upper(), url, json={})
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
