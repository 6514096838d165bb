"""Recognition end to end through the gateway: a photo uploaded to the user-media bucket (S3 server),
``POST /api/v1/recognize`` as a stream, the real recognition Celery worker (its own process, the
recognize_photo pipeline against ximilar-gw, llm-reranker, the embedder and the Ximilar / Gemini
simulators on loopback, migrated databases), its progress and result relayed as chips then cards."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi.testclient import TestClient

from api_gateway.app import create
from api_gateway.auth import issue_tokens
from api_gateway.settings import ApiGatewaySettings
from unde_testkit.recognition_testbed import PHOTO_ITEMS, Stack, recognition_bed, street_photo
from unde_testkit.testing import PostgresHandle, S3Handle, free_port, stop_process

BUCKET = "unde-user-media-e2e"


@pytest.fixture(scope="module")
def stack(pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with recognition_bed(pg.dsn, redis_url, tmp_path_factory.mktemp("bed")) as bed:
        yield bed


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """``celery -A recognition.celery_app worker -Q recognition_queue`` with the bed's services."""
    workdir = tmp_path_factory.mktemp("worker")
    env_file = workdir / ".env"
    values = {
        "XIMILAR_GW_URL": stack.gateway(),
        "LLM_RERANKER_URL": stack.reranker_url,
        "DATABASE_URL": stack.main_dsn,
        "STAGING_DB_URL": stack.staging_dsn,
        "CELERY_BROKER_URL": stack.redis_url,
        "CELERY_RESULT_BACKEND": stack.redis_url,
        "METRICS_PORT": str(free_port()),
    }
    env_file.write_text("\n".join(f"{k}={v}" for k, v in values.items()))
    env = {**os.environ, "UNDE_ENV_FILE": str(env_file), "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom")}
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "recognition.celery_app",
        "worker",
        "-Q",
        "recognition_queue",
    ]
    args += ["--concurrency", "1", "--without-mingle", "--without-gossip"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True).start()
    try:
        yield output
    finally:
        stop_process(proc, timeout=20)


@pytest.fixture(scope="module")
def client(stack: Stack, redis_url: str, s3: S3Handle) -> Iterator[tuple[TestClient, ApiGatewaySettings]]:
    s3.client().create_bucket(Bucket=BUCKET)
    base = redis_url.rsplit("/", 1)[0]
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    settings = ApiGatewaySettings.load(
        production_db_url=stack.main_dsn,
        shard_0_db_url=stack.main_dsn,
        redis_url=f"{base}/14",
        shard_routing_redis_url=f"{base}/12",
        dialogue_broker_url=f"{base}/11",
        recognition_broker_url=stack.redis_url,
        # the first task of a fresh worker also loads its pipeline: more than a warm request needs
        recognition_deadline_s=90,
        s3_endpoint=s3.endpoint_url,
        s3_region=s3.region,
        s3_user_media_access_key=s3.access_key,
        s3_user_media_secret_key=s3.secret_key,
        s3_user_media_bucket=BUCKET,
        jwt_signing_keys=json.dumps({"e2e": pem.decode()}),
        analytics_id_key="media-e2e-analytics-key",
    )
    with TestClient(create(settings)) as c:
        yield c, settings


def jpeg(image: Any, quality: int = 95) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_a_street_photo_is_recognised_through_the_gateway(
    client: tuple[TestClient, ApiGatewaySettings], worker: list[str]
) -> None:
    http, settings = client
    user = uuid.uuid4()
    headers = {"Authorization": f"Bearer {issue_tokens(settings, user, 0)['access_token']}"}
    photo = street_photo()
    thumb = photo.copy()
    thumb.thumbnail((200, 200))
    files = {
        "photo": ("street.jpg", jpeg(photo), "image/jpeg"),
        "thumb": ("t.jpg", jpeg(thumb, 80), "image/jpeg"),
    }
    uploaded = http.post("/api/v1/media", headers=headers, files=files)
    assert uploaded.status_code == 201, uploaded.text
    photo_id = uploaded.json()["photo_id"]

    stream_headers = {**headers, "Accept": "text/event-stream"}
    with http.stream(
        "POST", "/api/v1/recognize", headers=stream_headers, json={"photo_id": photo_id}
    ) as answer:
        assert answer.status_code == 200, answer.read()
        text = answer.read().decode()
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    assert [name for name, _ in events] == ["accepted", "chips", "cards"], (text, "".join(worker))
    chips, cards = events[1][1], events[2][1]
    assert [item["category"] for item in chips["items"]] == [name.lower() for name, _box, _p in PHOTO_ITEMS]
    assert [item["bbox"] for item in chips["items"]] == [list(box) for _n, box, _p in PHOTO_ITEMS]
    assert cards["status"] == "completed", cards
    assert len(cards["items"]) == len(PHOTO_ITEMS)
    assert all(item["band"] in ("exact", "similar", "style") for item in cards["items"])
    assert cards["items"][0]["band"] == "exact"
    assert cards["items"][0]["matches"][0]["sku_id"] == "EXACT-1"
    assert "X-Amz-Signature" not in text

    # the poll route gives the same result afterwards
    rid = events[0][1]["request_id"]
    polled = http.get(f"/api/v1/recognize/{rid}", headers=headers).json()
    assert polled["status"] == "completed" and polled["cards"] == cards
