"""Device sign-up, refresh and the access token check of the gateway, in-process on a real
PostgreSQL (production schema + shard schema migrated) and Redis.

Sign-up puts the user on the least-loaded live shard (routing_table); the token check refuses a
missing, expired, forged, wrong-type, unknown-key or alg-none token with 401 and
``WWW-Authenticate: Bearer``; rotating the signing key keeps tokens of the previous key valid
while it is listed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import psycopg
import pytest
import redis
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from api_gateway.app import create
from api_gateway.auth import decode_token, issue_tokens
from api_gateway.resources import ApiError
from api_gateway.settings import ApiGatewaySettings
from unde_testkit.gateway_testbed import ed25519_pem, gateway_settings, jwt_test_keys
from unde_testkit.testing import PostgresHandle, free_port
from unde_testkit.testing_sql import migrate_database

pytestmark = pytest.mark.timeout(120)

ROUTING_KEY = "gwauth:shard:{index}"


@pytest.fixture(scope="module")
def dbs(pg: PostgresHandle) -> tuple[str, str]:
    return migrate_database(pg, "gw_auth_main", "unde_main"), migrate_database(
        pg, "gw_auth_shard", "unde_shard"
    )


def settings_of(dbs: tuple[str, str], redis_url: str, **overrides: str) -> ApiGatewaySettings:
    # sign-ups are limited per client address, and every TestClient request comes from one
    many = json.dumps({"auth": {"rate": 1000, "burst": 1000}, "session": {"rate": 1000, "burst": 1000}})
    return gateway_settings(
        dbs[0], dbs[1], redis_url, SHARD_ROUTING_KEY=ROUTING_KEY, RATE_LIMITS=many, **overrides
    )


@pytest.fixture
def client(dbs: tuple[str, str], redis_url: str) -> Iterator[TestClient]:
    with TestClient(create(settings_of(dbs, redis_url))) as c:
        yield c


def routing_rows(main_dsn: str) -> dict[uuid.UUID, int]:
    with psycopg.connect(main_dsn) as conn:
        return {r[0]: r[1] for r in conn.execute("SELECT user_id, shard_index FROM routing_table").fetchall()}


def socket_address(dsn: str) -> tuple[str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW port").fetchone()
    assert row is not None
    return str(conninfo_to_dict(dsn)["host"]), int(row[0])


def me(c: TestClient, token: str) -> Any:
    """An authenticated route: session start answers 200 with a valid access token."""
    return c.post("/api/v1/session/start", json={}, headers={"Authorization": f"Bearer {token}"})


def test_device_signup_creates_a_user_and_tokens_that_open_the_api(
    client: TestClient, dbs: tuple[str, str]
) -> None:
    r = client.post("/api/v1/auth/device", json={"platform": "ios"})
    assert r.status_code == 201, r.text
    body = r.json()
    user_id = uuid.UUID(body["user_id"])
    assert routing_rows(dbs[0])[user_id] == body["shard"] == 0
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["refresh_expires_in"] == 30 * 86_400
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"] == "test-1"
    assert me(client, body["access_token"]).status_code == 200
    # an empty body is a sign-up too; a bad field is named
    assert client.post("/api/v1/auth/device").status_code == 201
    bad = client.post("/api/v1/auth/device", json={"platform": 7})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "platform"]


def test_signup_picks_the_least_loaded_live_shard(dbs: tuple[str, str], redis_url: str) -> None:
    """Three shards: 0 (configured), 1 (a routing entry naming the same server: a live primary),
    2 (no entry, no DSN: not live). 0 holds more users than 1, so new users go to 1 until the two
    are even; 2 is never chosen although it is empty."""
    main, shard = dbs
    host, port = socket_address(shard)
    routing = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/12")
    routing.hset(ROUTING_KEY.format(index=1), mapping={"host": host, "port": port, "member": "s1"})
    with psycopg.connect(main, autocommit=True) as conn:
        conn.execute("TRUNCATE routing_table")
        for _ in range(3):
            conn.execute("INSERT INTO routing_table (user_id, shard_index) VALUES (%s, 0)", (uuid.uuid4(),))
    settings = settings_of(dbs, redis_url, SHARD_COUNT="3", SHARD_MEMBERS=f"1@{host}:{port}")
    try:
        with TestClient(create(settings)) as c:
            shards = [c.post("/api/v1/auth/device").json()["shard"] for _ in range(4)]
    finally:
        routing.delete(ROUTING_KEY.format(index=1))
    assert shards == [1, 1, 1, 0]
    assert sorted(routing_rows(main).values()).count(2) == 0


def test_refresh_gives_a_new_pair_and_is_not_an_access_token(client: TestClient) -> None:
    pair = client.post("/api/v1/auth/device").json()
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert fresh["user_id"] == pair["user_id"] and fresh["access_token"] != pair["access_token"]
    assert me(client, fresh["access_token"]).status_code == 200
    refused = me(client, pair["refresh_token"])
    assert refused.status_code == 401 and refused.json()["detail"] == "the token is not an access token"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    # nor an access token at the refresh route
    wrong = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert wrong.status_code == 401


def _claims(user_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": str(user_id), "shard": 0, "typ": "access", "iss": "unde-api-gateway", "aud": "unde-app"}
    return {**claims, "iat": now, "exp": now + 600, **changes}


def _sign(claims: dict[str, Any], pem: str, kid: str = "test-1") -> str:
    key = load_pem_private_key(pem.encode(), password=None)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})  # type: ignore[arg-type]


def test_bad_tokens_are_401_with_the_reason(client: TestClient) -> None:
    user = uuid.uuid4()
    our_pem = json.loads(jwt_test_keys()["JWT_SIGNING_KEYS"])["test-1"]
    now = int(time.time())
    unsigned = (
        base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"test-1"}').rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(json.dumps(_claims(user)).encode()).rstrip(b"=").decode()
        + "."
    )
    cases = {
        "missing": (None, "an access token is required"),
        "not bearer": ("Basic abc", "the Authorization header must be"),
        "garbage": ("Bearer not.a.jwt", "the token is not a JWT"),
        "expired": (f"Bearer {_sign(_claims(user, iat=now - 3600, exp=now - 600), our_pem)}", "expired"),
        "forged": (f"Bearer {_sign(_claims(user), ed25519_pem())}", "the token is invalid"),
        "unknown kid": (f"Bearer {_sign(_claims(user), our_pem, kid='gone')}", "not signed by a known key"),
        "alg none": (f"Bearer {unsigned}", "not signed by a known key"),
        "wrong audience": (f"Bearer {_sign(_claims(user, aud='other'), our_pem)}", "the token is invalid"),
        "no subject": (
            f"Bearer {_sign({k: v for k, v in _claims(user).items() if k != 'sub'}, our_pem)}",
            "invalid",
        ),
        "bad subject": (f"Bearer {_sign(_claims(user, sub='nope'), our_pem)}", "subject is invalid"),
    }
    for name, (header, reason) in cases.items():
        headers = {"Authorization": header} if header else {}
        r = client.post("/api/v1/chat", json={}, headers=headers)
        assert r.status_code == 401, (name, r.text)
        assert r.json()["error"] == "unauthorized" and reason in r.json()["detail"], (name, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer"), name
    # the same claims signed by our key pass
    assert me(client, _sign(_claims(user), our_pem)).status_code == 200


def test_key_rotation_keeps_the_old_key_valid_while_listed(dbs: tuple[str, str], redis_url: str) -> None:
    old = settings_of(dbs, redis_url)
    user = uuid.uuid4()
    before = issue_tokens(old, user, 0)
    both = settings_of(dbs, redis_url, **jwt_test_keys("test-1", "test-2", current="test-2"))
    after = issue_tokens(both, user, 0)
    assert jwt.get_unverified_header(after["access_token"])["kid"] == "test-2"
    assert decode_token(both, before["access_token"], "access").user_id == user
    assert decode_token(both, after["access_token"], "access").user_id == user
    dropped = settings_of(dbs, redis_url, **jwt_test_keys("test-2"))
    assert decode_token(dropped, after["access_token"], "access").user_id == user
    with pytest.raises(ApiError) as info:
        decode_token(dropped, before["refresh_token"], "refresh")
    assert info.value.status == 401


def test_refresh_of_a_user_gone_from_routing_table_is_refused(
    client: TestClient, dbs: tuple[str, str]
) -> None:
    pair = client.post("/api/v1/auth/device").json()
    with psycopg.connect(dbs[0], autocommit=True) as conn:
        conn.execute("DELETE FROM routing_table WHERE user_id = %s", (uuid.UUID(pair["user_id"]),))
    r = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 401 and "no longer exists" in r.json()["detail"]


def test_signup_with_the_production_db_down_is_503_and_stores_nothing(
    dbs: tuple[str, str], redis_url: str
) -> None:
    down = f"postgresql://app@127.0.0.1:{free_port()}/unde_main"
    settings = settings_of(
        dbs, redis_url, PRODUCTION_DB_URL=down, DB_POOL_TIMEOUT_S="1", DB_CONNECT_TIMEOUT_S="1"
    )
    before = routing_rows(dbs[0])
    with TestClient(create(settings)) as c:
        r = c.post("/api/v1/auth/device")
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json()["error"] == "database_unavailable"
    assert routing_rows(dbs[0]) == before
