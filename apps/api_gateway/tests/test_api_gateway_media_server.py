"""The media routes on the real server: ``python -m api_gateway`` (uvicorn, its own process) on
loopback, with real PostgreSQL, Redis and an S3 server, spoken to over HTTP."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from psycopg.types.json import Jsonb

from api_gateway.auth import issue_tokens
from api_gateway.media_products import CACHE_PREFIX
from api_gateway.settings import ApiGatewaySettings
from unde_testkit.catalog_testing import jpeg_bytes
from unde_testkit.gateway_testbed import gateway_env
from unde_testkit.recognition_testbed import migrate_database
from unde_testkit.testing import PostgresHandle, S3Handle, running_service

BUCKET = "unde-user-media-server"


@pytest.fixture(scope="module")
def env(pg: PostgresHandle, redis_url: str, s3: S3Handle) -> dict[str, str]:
    main = migrate_database(pg.dsn, "gw_media_server_main", "unde_main")
    with psycopg.connect(main) as conn:
        conn.execute("TRUNCATE products RESTART IDENTITY CASCADE")
        for i in range(3):
            conn.execute(
                "INSERT INTO products (sku, brand, name, image_url, image_urls, collage_url, in_stock)"
                " VALUES (%s, 'zara', %s, %s, %s, %s, true)",
                (
                    f"SRV-{i}",
                    f"Dress {i}",
                    f"https://cdn.example/o/{i}.jpg",
                    Jsonb([]),
                    f"https://cdn.example/c/{i}.jpg",
                ),
            )
    s3.client().create_bucket(Bucket=BUCKET)
    return gateway_env(
        main,
        main,
        redis_url,
        S3_ENDPOINT=s3.endpoint_url,
        S3_REGION=s3.region,
        S3_USER_MEDIA_ACCESS_KEY=s3.access_key,
        S3_USER_MEDIA_SECRET_KEY=s3.secret_key,
        S3_USER_MEDIA_BUCKET=BUCKET,
    )


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("gw-server")
    env_file = workdir / "api_gateway.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    url = f"http://127.0.0.1:{env['PORT']}"
    with running_service(
        [sys.executable, "-m", "api_gateway"], env_file, url + "/health/live", workdir / "gw.log"
    ):
        yield url


@pytest.fixture(scope="module")
def settings(env: dict[str, str]) -> ApiGatewaySettings:
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    return ApiGatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


def headers(settings: ApiGatewaySettings, user: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_tokens(settings, user, 0)['access_token']}"}


def stored(s3: S3Handle, user: uuid.UUID) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{user}/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def post_photo(server: str, auth: dict[str, str], photo: bytes, thumb: bytes) -> httpx.Response:
    files = {"photo": ("p.jpg", photo, "image/jpeg"), "thumb": ("t.jpg", thumb, "image/jpeg")}
    return httpx.post(f"{server}/api/v1/media", headers=auth, files=files, timeout=30)


def test_upload_over_http_stores_both_objects(
    server: str, settings: ApiGatewaySettings, s3: S3Handle
) -> None:
    user = uuid.uuid4()
    original = jpeg_bytes(3000, 2000, "srv", texture=0.5)  # above the app's default 1 MiB body limit
    assert len(original) > 1024 * 1024
    answer = post_photo(server, headers(settings, user), original, jpeg_bytes(200, 150, "srv"))
    assert answer.status_code == 201, answer.text
    photo_id = answer.json()["photo_id"]
    assert stored(s3, user) == [
        f"{user}/photos/{photo_id}/original.jpg",
        f"{user}/photos/{photo_id}/thumb.jpg",
    ]


def test_a_20_mb_upload_is_refused_over_http(server: str, settings: ApiGatewaySettings, s3: S3Handle) -> None:
    user = uuid.uuid4()
    try:
        answer = post_photo(server, headers(settings, user), b"\xff\xd8" + b"\0" * 20 * 1024 * 1024, b"")
    except httpx.WriteError:  # the server answered 413 and closed while the body was still going
        pass
    else:
        assert answer.status_code == 413, answer.text
    assert stored(s3, user) == []


def test_a_non_image_upload_is_refused_over_http(
    server: str, settings: ApiGatewaySettings, s3: S3Handle
) -> None:
    user = uuid.uuid4()
    answer = post_photo(
        server, headers(settings, user), b"#!/bin/sh\necho not a photo\n" * 50, jpeg_bytes(200, 200)
    )
    assert answer.status_code == 415
    assert answer.json()["error"] == "unsupported_type"
    assert stored(s3, user) == []


def test_products_over_http_hit_the_cache_the_second_time(server: str, settings: ApiGatewaySettings) -> None:
    cache = redis.Redis.from_url(settings.redis_url.get_secret_value())
    for key in cache.scan_iter(f"{CACHE_PREFIX}*"):
        cache.delete(key)
    auth = headers(settings, uuid.uuid4())
    first = httpx.get(f"{server}/api/v1/products", headers=auth, params={"sku": "SRV-1,SRV-2"}, timeout=10)
    second = httpx.get(f"{server}/api/v1/products", headers=auth, params={"sku": "SRV-1,SRV-2"}, timeout=10)
    assert (first.status_code, second.status_code) == (200, 200), first.text
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert [(i["sku"], i["collage_url"]) for i in second.json()["items"]] == [
        ("SRV-1", "https://cdn.example/c/1.jpg"),
        ("SRV-2", "https://cdn.example/c/2.jpg"),
    ]
    assert json.loads(first.text) == json.loads(second.text)
