"""The media, recognition and products routes over HTTP, on the whole gateway app (its lifespan,
auth, rate limits, body guard) with real PostgreSQL (migrated unde_main), Redis and an S3 server.

Recognition here is relayed from a worker stand-in that takes the task from recognition_queue,
downloads the photo from the presigned URL it carries and writes what the recognition worker writes
(the detection on its channel and key, then the Celery result); the real recognition worker runs
in test_gateway_media_recognition_e2e.py."""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis
from celery import Celery
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi.testclient import TestClient
from PIL import Image
from psycopg.types.json import Jsonb

from api_gateway.app import create
from api_gateway.auth import issue_tokens
from api_gateway.media_products import CACHE_PREFIX
from api_gateway.settings import ApiGatewaySettings
from unde_testkit.catalog_testing import jpeg_bytes
from unde_testkit.fuzz import FuzzReport, schema_cases
from unde_testkit.recognition_testbed import migrate_database
from unde_testkit.testing import PostgresHandle, S3Handle, free_port

BUCKET = "unde-user-media"
MAX_QUEUED = 5


def signing_keys() -> str:
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return json.dumps({"media-test": pem.decode()})


def redis_db(redis_url: str, db: int) -> str:
    return f"{redis_url.rsplit('/', 1)[0]}/{db}"


def bomb_jpeg(width: int, height: int) -> bytes:
    data = bytearray(jpeg_bytes(64, 64, "bomb"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.fixture(scope="module")
def main_dsn(pg: PostgresHandle) -> str:
    dsn = migrate_database(pg.dsn, "gw_media_http_main", "unde_main")
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE products RESTART IDENTITY CASCADE")
        for i in range(12):
            conn.execute(
                "INSERT INTO products (sku, brand, name, price, category, image_url, image_urls, collage_url,"
                " in_stock) VALUES (%s, %s, %s, 19.90, 'Tops', %s, %s, %s, true)",
                (
                    f"HTTP-{i:02}",
                    "zara" if i % 2 else "mango",
                    f"Top {i}",
                    f"https://cdn.example/originals/{i}.jpg",
                    Jsonb([f"https://cdn.example/originals/{i}.jpg"]),
                    f"https://cdn.example/collages/{i}.jpg",
                ),
            )
    return dsn


@pytest.fixture(scope="module")
def values(main_dsn: str, redis_url: str, s3: S3Handle) -> dict[str, Any]:
    s3.client().create_bucket(Bucket=BUCKET)
    return {
        "production_db_url": main_dsn,
        "shard_0_db_url": main_dsn,
        "redis_url": redis_db(redis_url, 14),
        "shard_routing_redis_url": redis_db(redis_url, 12),
        "dialogue_broker_url": redis_db(redis_url, 11),
        "recognition_broker_url": redis_db(redis_url, 6),
        "recognition_max_queued": MAX_QUEUED,
        "recognition_deadline_s": 20,
        "s3_endpoint": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_user_media_access_key": s3.access_key,
        "s3_user_media_secret_key": s3.secret_key,
        "s3_user_media_bucket": BUCKET,
        "jwt_signing_keys": signing_keys(),
        "analytics_id_key": "media-test-analytics-key",
        "db_pool_timeout_s": 2,
    }


@pytest.fixture(scope="module")
def settings(values: dict[str, Any]) -> ApiGatewaySettings:
    return ApiGatewaySettings.load(**values)


@pytest.fixture(scope="module")
def client(settings: ApiGatewaySettings) -> Iterator[TestClient]:
    with TestClient(create(settings)) as c:
        yield c


@pytest.fixture
def broker(settings: ApiGatewaySettings) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(settings.recognition_broker_url.get_secret_value())
    r.delete("recognition_queue")
    yield r
    r.delete("recognition_queue")
    r.close()


def auth(settings: ApiGatewaySettings, user: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_tokens(settings, user, 0)['access_token']}"}


def stored(s3: S3Handle, user: uuid.UUID) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{user}/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def upload(
    client: TestClient, headers: dict[str, str], photo: bytes, thumb: bytes, **fields: str
) -> httpx.Response:
    files = {"photo": ("p.jpg", photo, "image/jpeg"), "thumb": ("t.jpg", thumb, "image/jpeg")}
    answer: httpx.Response = client.post("/api/v1/media", headers=headers, files=files, data=fields)
    return answer


# --------------------------------------------------------------------------- upload


def test_upload_stores_the_original_and_the_thumb(
    client: TestClient, settings: ApiGatewaySettings, s3: S3Handle
) -> None:
    user, photo_id = uuid.uuid4(), uuid.uuid4()
    original, thumb = jpeg_bytes(1200, 1600, "o", texture=0.1), jpeg_bytes(150, 200, "t")
    answer = upload(client, auth(settings, user), original, thumb, photo_id=str(photo_id))
    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "photo_id": str(photo_id),
        "original": {"width": 1200, "height": 1600, "bytes": len(original)},
        "thumb": {"width": 150, "height": 200, "bytes": len(thumb)},
    }
    prefix = f"{user}/photos/{photo_id}"
    assert stored(s3, user) == [f"{prefix}/original.jpg", f"{prefix}/thumb.jpg"]
    body = s3.client().get_object(Bucket=BUCKET, Key=f"{prefix}/original.jpg")["Body"].read()
    assert body == original


def test_upload_without_photo_id_gets_one(
    client: TestClient, settings: ApiGatewaySettings, s3: S3Handle
) -> None:
    user = uuid.uuid4()
    answer = upload(client, auth(settings, user), jpeg_bytes(400, 300), jpeg_bytes(200, 150))
    assert answer.status_code == 201, answer.text
    photo_id = uuid.UUID(answer.json()["photo_id"])
    assert len(stored(s3, user)) == 2 and str(photo_id) in stored(s3, user)[0]


def twenty_mb() -> bytes:
    return b"\xff\xd8" + b"\x00" * (20 * 1024 * 1024)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_20_mb_body_is_refused_and_nothing_stored(
    client: TestClient, settings: ApiGatewaySettings, s3: S3Handle, chunked: bool
) -> None:
    user = uuid.uuid4()
    headers = auth(settings, user)
    if chunked:  # no Content-Length: the body is counted while it arrives
        boundary = "media-test-boundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()

        def parts() -> Iterator[bytes]:
            yield head
            big = twenty_mb()
            for i in range(0, len(big), 1024 * 1024):
                yield big[i : i + 1024 * 1024]
            yield f"\r\n--{boundary}--\r\n".encode()

        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        answer = client.post("/api/v1/media", headers=headers, content=parts())
    else:
        answer = upload(client, headers, twenty_mb(), jpeg_bytes(200, 200))
    assert answer.status_code == 413, answer.text
    assert stored(s3, user) == []


@pytest.mark.parametrize(
    ("photo", "thumb", "status"),
    [
        (b"%PDF-1.4 this is not an image" * 100, jpeg_bytes(200, 200), 415),
        (jpeg_bytes(400, 400), b"<html>not a thumbnail</html>", 415),
        (bomb_jpeg(30000, 30000), jpeg_bytes(200, 200), 413),
        (bomb_jpeg(9000, 9000), jpeg_bytes(200, 200), 413),
        (jpeg_bytes(800, 600, texture=0.2)[:-3000], jpeg_bytes(200, 200), 415),
    ],
    ids=["not-an-image", "thumb-not-an-image", "bomb-900mp", "bomb-81mp", "truncated"],
)
def test_a_bad_part_is_refused_and_nothing_stored(
    client: TestClient, settings: ApiGatewaySettings, s3: S3Handle, photo: bytes, thumb: bytes, status: int
) -> None:
    user = uuid.uuid4()
    answer = upload(client, auth(settings, user), photo, thumb)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error", "detail"}
    assert answer.json()["detail"].startswith(("original", "thumb"))
    assert stored(s3, user) == []


def test_upload_form_problems_name_the_field(client: TestClient, settings: ApiGatewaySettings) -> None:
    headers = auth(settings, uuid.uuid4())
    missing = client.post("/api/v1/media", headers=headers, files={"photo": ("p.jpg", jpeg_bytes(300, 300))})
    assert missing.status_code == 422 and missing.json()["detail"].startswith("thumb")
    bad_id = upload(client, headers, jpeg_bytes(300, 300), jpeg_bytes(200, 200), photo_id="nope")
    assert bad_id.status_code == 422 and bad_id.json()["detail"].startswith("photo_id")
    not_multipart = client.post("/api/v1/media", headers=headers, json={"photo": "x"})
    assert not_multipart.status_code == 415
    broken = client.post(
        "/api/v1/media",
        headers={**headers, "Content-Type": "multipart/form-data; boundary=xyz"},
        content=b'--xyz\r\nContent-Disposition: form-data; name="photo"; filename="a"\r\n\r\n' + b"a" * 5000,
    )
    assert broken.status_code in (400, 422), broken.text
    assert set(broken.json()) == {"error", "detail"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/media"), ("POST", "/api/v1/recognize"), ("GET", "/api/v1/products")],
)
def test_the_routes_need_an_access_token(client: TestClient, method: str, path: str) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


# --------------------------------------------------------------------------- recognition


RESULT_ITEMS = [
    {"category": "Jackets", "bbox": [40, 50, 240, 350], "tags": {}, "band": "exact", "top_score": 0.93,
     "matches": [{"match_type": "exact", "sku_id": "EXACT-1", "brand": "zara", "score": 0.93}]},
]  # fmt: skip


class WorkerStandIn:
    """Takes one task from recognition_queue like a worker, downloads its photo, and answers as the
    recognition pipeline does."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.kwargs: dict[str, Any] = {}
        self.photo: bytes = b""
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        client = redis.Redis.from_url(self.broker_url)
        popped = client.brpop(["recognition_queue"], timeout=20)
        assert popped is not None
        message = json.loads(popped[1])
        _args, self.kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        self.photo = httpx.get(self.kwargs["photo_url"], timeout=10).content
        rid = self.kwargs["request_id"]
        crop = self.kwargs["photo_url"] + "#xywh=40,50,200,300"
        item = {"crop_url": crop, "bbox": [40, 50, 240, 350], "category": "Jackets", "confidence": 0.95}
        detection = json.dumps({"request_id": rid, "step": "detect", "items": [item]})
        client.set(f"recognition:detection:{rid}", detection, ex=600)
        client.publish(f"recognition:progress:{rid}", detection)
        items = [{**item, "crop_url": crop} for item in RESULT_ITEMS]
        backend = Celery("recognition", broker=self.broker_url, backend=self.broker_url).backend
        backend.store_result(
            rid, {"request_id": rid, "status": "completed", "items": items, "steps": {}}, "SUCCESS"
        )
        client.close()


def uploaded_photo(
    client: TestClient, settings: ApiGatewaySettings, user: uuid.UUID
) -> tuple[uuid.UUID, bytes]:
    original = jpeg_bytes(800, 400, "street")
    answer = upload(client, auth(settings, user), original, jpeg_bytes(200, 100, "street"))
    assert answer.status_code == 201, answer.text
    return uuid.UUID(answer.json()["photo_id"]), original


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_recognize_streams_chips_then_cards(
    client: TestClient, settings: ApiGatewaySettings, broker: redis.Redis
) -> None:
    user = uuid.uuid4()
    photo_id, original = uploaded_photo(client, settings, user)
    worker = WorkerStandIn(settings.recognition_broker_url.get_secret_value())
    worker.thread.start()
    headers = {**auth(settings, user), "Accept": "text/event-stream"}
    with client.stream(
        "POST", "/api/v1/recognize", headers=headers, json={"photo_id": str(photo_id)}
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = answer.read().decode()
    worker.thread.join(timeout=30)
    events = sse_events(text)
    assert [name for name, _ in events] == ["accepted", "chips", "cards"]
    rid = events[0][1]["request_id"]
    assert worker.kwargs["request_id"] == rid and worker.kwargs["user_id"] == str(user)
    assert worker.photo == original  # the presigned URL reads the user's private original
    assert events[1][1]["items"] == [{"bbox": [40, 50, 240, 350], "category": "Jackets", "confidence": 0.95}]
    assert events[2][1]["status"] == "completed"
    assert events[2][1]["items"][0]["matches"][0]["sku_id"] == "EXACT-1"
    assert "X-Amz-Signature" not in text  # no presigned URL leaves through the answer


def test_recognize_without_a_stream_is_polled(
    client: TestClient, settings: ApiGatewaySettings, broker: redis.Redis
) -> None:
    user = uuid.uuid4()
    photo_id, _ = uploaded_photo(client, settings, user)
    headers = auth(settings, user)
    rid = uuid.uuid4()
    accepted = client.post(
        "/api/v1/recognize", headers=headers, json={"photo_id": str(photo_id), "request_id": str(rid)}
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {
        "request_id": str(rid),
        "status": "accepted",
        "poll_url": f"/api/v1/recognize/{rid}",
    }
    pending = client.get(f"/api/v1/recognize/{rid}", headers=headers)
    assert pending.json() == {"request_id": str(rid), "status": "pending", "chips": None, "cards": None}
    # a retry of the same request is not enqueued twice
    again = client.post(
        "/api/v1/recognize", headers=headers, json={"photo_id": str(photo_id), "request_id": str(rid)}
    )
    assert again.status_code == 202 and broker.llen("recognition_queue") == 1
    worker = WorkerStandIn(settings.recognition_broker_url.get_secret_value())
    worker.run()
    done = client.get(f"/api/v1/recognize/{rid}", headers=headers).json()
    assert done["status"] == "completed"
    assert done["chips"]["items"][0]["category"] == "Jackets"
    assert done["cards"]["items"][0]["band"] == "exact"
    # someone else's request is not found
    other = client.get(f"/api/v1/recognize/{rid}", headers=auth(settings, uuid.uuid4()))
    assert other.status_code == 404


def test_recognize_refuses_unknown_photos_and_taken_request_ids(
    client: TestClient, settings: ApiGatewaySettings, broker: redis.Redis
) -> None:
    user = uuid.uuid4()
    unknown = client.post(
        "/api/v1/recognize", headers=auth(settings, user), json={"photo_id": str(uuid.uuid4())}
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "photo_not_found"
    photo_id, _ = uploaded_photo(client, settings, user)
    # another user's photo id is not this user's photo
    theirs = client.post(
        "/api/v1/recognize", headers=auth(settings, uuid.uuid4()), json={"photo_id": str(photo_id)}
    )
    assert theirs.status_code == 404
    rid = str(uuid.uuid4())
    first = client.post(
        "/api/v1/recognize", headers=auth(settings, user), json={"photo_id": str(photo_id), "request_id": rid}
    )
    assert first.status_code == 202
    other_user = uuid.uuid4()
    other_photo, _ = uploaded_photo(client, settings, other_user)
    taken = client.post(
        "/api/v1/recognize",
        headers=auth(settings, other_user),
        json={"photo_id": str(other_photo), "request_id": rid},
    )
    assert taken.status_code == 409
    bad = client.post("/api/v1/recognize", headers=auth(settings, user), json={"photo_id": "x"})
    assert bad.status_code == 422 and "photo_id" in json.dumps(bad.json())


def test_recognize_answers_503_with_retry_after_when_the_queue_is_full(
    client: TestClient, settings: ApiGatewaySettings, broker: redis.Redis
) -> None:
    user = uuid.uuid4()
    photo_id, _ = uploaded_photo(client, settings, user)
    broker.lpush("recognition_queue", *[b"{}"] * MAX_QUEUED)
    answer = client.post("/api/v1/recognize", headers=auth(settings, user), json={"photo_id": str(photo_id)})
    assert answer.status_code == 503
    assert answer.json()["error"] == "recognition_busy"
    assert int(answer.headers["Retry-After"]) == settings.recognition_retry_after_s
    assert broker.llen("recognition_queue") == MAX_QUEUED


# --------------------------------------------------------------------------- products


def test_products_second_call_is_a_cache_hit(client: TestClient, settings: ApiGatewaySettings) -> None:
    cache = redis.Redis.from_url(settings.redis_url.get_secret_value())
    for key in cache.scan_iter(f"{CACHE_PREFIX}*"):
        cache.delete(key)
    headers = auth(settings, uuid.uuid4())
    first = client.get("/api/v1/products", headers=headers, params={"brand": "zara", "limit": 4})
    assert first.status_code == 200, first.text
    assert first.headers["X-Cache"] == "miss"
    second = client.get("/api/v1/products", headers=headers, params={"brand": "zara", "limit": 4})
    assert second.headers["X-Cache"] == "hit" and second.json() == first.json()
    items = first.json()["items"]
    assert [i["sku"] for i in items] == ["HTTP-01", "HTTP-03", "HTTP-05", "HTTP-07"]
    assert items[0]["image_url"] == "https://cdn.example/originals/1.jpg"
    assert items[0]["collage_url"] == "https://cdn.example/collages/1.jpg"
    rest = client.get(
        "/api/v1/products", headers=headers, params={"brand": "zara", "after": first.json()["next_after"]}
    )
    assert [i["sku"] for i in rest.json()["items"]] == ["HTTP-09", "HTTP-11"]
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    hits = metrics.registry.get_sample_value("api_gateway_products_cache_requests_total", {"result": "hit"})
    assert hits is not None and hits >= 1
    assert metrics.registry.get_sample_value("api_gateway_products_cache_hit_ratio") > 0


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "501"}, {"limit": "101"}, {"id": "-3"}, {"after": "x"}, {"in_stock": "maybe"}],
)
def test_products_bad_parameters_are_422(
    client: TestClient, settings: ApiGatewaySettings, params: dict[str, str]
) -> None:
    answer = client.get("/api/v1/products", headers=auth(settings, uuid.uuid4()), params=params)
    assert answer.status_code == 422, answer.text


def test_image_check_sees_a_png_named_jpg(
    client: TestClient, settings: ApiGatewaySettings, s3: S3Handle
) -> None:
    """The declared part type is not trusted: a PNG sent as image/jpeg is refused by its content."""
    out = io.BytesIO()
    Image.new("RGB", (300, 300), (1, 2, 3)).save(out, "PNG")
    user = uuid.uuid4()
    answer = upload(client, auth(settings, user), out.getvalue(), jpeg_bytes(200, 200))
    assert answer.status_code == 415
    assert stored(s3, user) == []


def test_fuzz_of_the_media_routes_finds_no_5xx(values: dict[str, Any], broker: redis.Redis) -> None:
    """schemathesis cases of these routes' OpenAPI, sent with a valid user token (rate limits
    opened so that the cases reach the routes)."""
    wide = {"rate": 10_000, "burst": 10_000}
    settings = ApiGatewaySettings.load(
        **values, rate_limits=json.dumps({b: wide for b in ("upload", "recognize", "products")})
    )
    app = create(settings)
    with TestClient(app, headers=auth(settings, uuid.uuid4())) as client:
        paths = client.get("/openapi.json").json()["paths"]
        mine = ("/api/v1/media", "/api/v1/recognize", "/api/v1/products")
        report = FuzzReport("api_gateway")
        schema_cases(client, report, max_examples=25, exclude=[p for p in paths if not p.startswith(mine)])
    print(report.summary())
    assert report.requests > 0
    assert report.findings == [], report.summary()


def test_products_while_the_production_db_is_down(
    client: TestClient, values: dict[str, Any], settings: ApiGatewaySettings
) -> None:
    """A page cached before is served from its stale copy; one never cached is 503 + Retry-After."""
    headers = auth(settings, uuid.uuid4())
    params = {"category": "Tops", "limit": 2}
    warm = client.get("/api/v1/products", headers=headers, params=params)
    assert warm.status_code == 200
    cache = redis.Redis.from_url(settings.redis_url.get_secret_value())
    for key in cache.scan_iter(f"{CACHE_PREFIX}*"):
        if b":stale:" not in key:
            cache.delete(key)  # the short-lived copies expired
    dead = ApiGatewaySettings.load(
        **{**values, "production_db_url": f"postgresql://x@127.0.0.1:{free_port()}/x"}
    )
    with TestClient(create(dead)) as down:
        stale = down.get("/api/v1/products", headers=headers, params=params)
        assert stale.status_code == 200 and stale.headers["X-Cache"] == "stale"
        assert stale.json() == warm.json()
        never = down.get("/api/v1/products", headers=headers, params={"sku": "NEVER-CACHED"})
        assert never.status_code == 503 and never.json()["error"] == "catalog_unavailable"
        assert int(never.headers["Retry-After"]) > 0
