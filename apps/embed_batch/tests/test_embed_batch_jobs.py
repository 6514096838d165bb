"""embed-batch on real servers: originals in an S3-compatible server, PostgreSQL + pgvector with the
project's migrations, Redis, the ONNX test model, and a real Celery worker: jobs are idempotent,
resume after a crash, progressive ingestion adds photos of low-scoring SKUs; HTTP API and metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import redis
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from embed_batch.app import create
from embed_batch.jobs import JobStore, pending_photos, run_job
from embed_batch.settings import EmbedBatchSettings
from embedder.model import ImageEncoder
from unde_common.db import create_pool
from unde_common.images import decode_image
from unde_common.s3 import ObjectStore, S3Config
from unde_testkit.recognition_simulators import solid_image
from unde_testkit.recognition_testbed import migrate_database, png_bytes
from unde_testkit.service_auth import service_client
from unde_testkit.testing import PostgresHandle, S3Handle, free_port, stop_process
from unde_testkit.testmodel import build_test_model

COLOURS = [(200, 30, 40), (30, 60, 190), (40, 150, 60), (230, 210, 40), (150, 150, 150)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_model(tmp_path_factory.mktemp("model") / "m.onnx")


@pytest.fixture
def env(pg: PostgresHandle, redis_url: str, s3: S3Handle, model: Path) -> Iterator[dict[str, str]]:
    main = migrate_database(pg.dsn, "eb_main", "unde_main")
    bucket = f"eb-{time.time_ns()}"
    values = {
        "PRODUCTION_DB_URL": main,
        "REDIS_URL": redis_url.replace("/0", "/7"),
        "S3_ENDPOINT": s3.endpoint_url,
        "S3_ACCESS_KEY": s3.access_key,
        "S3_SECRET_KEY": s3.secret_key,
        "S3_REGION": s3.region,
        "S3_BUCKET": bucket,
        "MODEL_PATH": str(model),
        "IMAGES_PER_SKU": "2",
        "JOB_STALE_AFTER_S": "10",
    }
    store = ObjectStore.from_config(
        S3Config(
            s3.endpoint_url,
            SecretStr(s3.access_key),
            SecretStr(s3.secret_key),
            bucket=bucket,
            region=s3.region,
        )
    )
    store.ensure_bucket()
    with psycopg.connect(main) as conn:
        conn.execute("TRUNCATE products, unde_ai.sku_image_embeddings, recognition_requests")
        for n in range(5):
            sku = f"SKU-{n}"
            urls = [f"{store.url(f'originals/zara/{sku}/{i + 1}.jpg')}" for i in range(4)]
            conn.execute(
                "INSERT INTO products (sku, brand, name, image_urls, in_stock)"
                " VALUES (%s, 'zara', %s, %s, true)",
                (sku, f"item {n}", Jsonb(urls)),
            )
            for i in range(4):
                if (n, i) == (3, 1):
                    continue  # a photo missing from Object Storage
                image = solid_image((120, 160), COLOURS[n], stripes=i + 1)
                store.put_bytes(
                    f"originals/zara/{sku}/{i + 1}.jpg", png_bytes(image), content_type="image/png"
                )
    client = redis.Redis.from_url(values["REDIS_URL"])
    for key in client.scan_iter("embed_batch:*"):
        client.delete(key)
    yield values


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> EmbedBatchSettings:
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    monkeypatch.setenv("UNDE_ENV_FILE", str(path))
    return EmbedBatchSettings.load()


def rows(dsn: str) -> dict[tuple[str, int], list[float]]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT sku, image_index, embedding::text FROM unde_ai.sku_image_embeddings ORDER BY 1, 2"
        ).fetchall()
    return {(s, i): [float(v) for v in e.strip("[]").split(",")] for s, i, e in found}


def test_job_embeds_what_is_missing_once(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: Path
) -> None:
    settings = settings_from(env, monkeypatch, tmp_path)
    db = create_pool(settings.production_db_url, app_name="embed_batch", wait=True)
    store = ObjectStore.from_settings(settings)
    encoder = ImageEncoder(model)
    jobs = JobStore(redis.Redis.from_url(settings.redis_url.get_secret_value()))
    try:
        job = jobs.create("all", 3)
        result = run_job(job, settings=settings, db=db, store=store, encoder=encoder, jobs=jobs)
        assert result is not None and (result.total, result.done, result.errors) == (10, 9, 1)
        state = jobs.get(job)
        assert state is not None and state["state"] == "done"
        assert "SKU-3/1" in state["last_errors"][0] and "NoSuchKey" in state["last_errors"][0]
        saved = rows(settings.production_db_url.get_secret_value())
        assert len(saved) == 9 and ("SKU-3", 1) not in saved
        expected = encoder.embed([decode_image(store.get_bytes("originals/zara/SKU-2/2.jpg"), "x")])[0]
        assert np.allclose(saved[("SKU-2", 1)], expected, atol=1e-5)
        # idempotent: a second run finds only the missing photo, writes nothing twice
        again = run_job(
            jobs.create("new", 3), settings=settings, db=db, store=store, encoder=encoder, jobs=jobs
        )
        assert again is not None and (again.total - again.done, again.errors) == (1, 1)
        assert len(rows(settings.production_db_url.get_secret_value())) == 9
        # progressive: SKU-4 was matched with a low score → all 4 of its photos
        with psycopg.connect(settings.production_db_url.get_secret_value()) as conn:
            final = [
                {"band": "similar", "matches": [{"sku_id": "SKU-4", "score": 0.55, "match_type": "similar"}]}
            ]
            conn.execute(
                "INSERT INTO recognition_requests (photo_url, status, final_matches)"
                " VALUES ('x', 'completed', %s)",
                (Jsonb(final),),
            )
        assert [(p.sku, p.index) for p in pending_photos(db, settings, "progressive")] == [
            ("SKU-4", 2),
            ("SKU-4", 3),
        ]
        run_job(
            jobs.create("progressive", 10), settings=settings, db=db, store=store, encoder=encoder, jobs=jobs
        )
        assert {("SKU-4", 2), ("SKU-4", 3)} <= set(rows(settings.production_db_url.get_secret_value()))
    finally:
        db.close()


def test_http_api_and_a_worker_that_resumes_after_a_crash(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_from(env, monkeypatch, tmp_path)
    jobs = JobStore(redis.Redis.from_url(settings.redis_url.get_secret_value()))
    app = create(settings)
    with service_client(app) as client:
        assert client.get("/status").status_code == 404
        bad = client.post("/embed_batch", json={"scope": "everything"})
        assert bad.status_code == 422 and "scope" in bad.json()["detail"]
        assert client.post("/embed_batch", json={"scope": "all", "batch_size": 0}).status_code == 422
        accepted = client.post("/embed_batch", json={"scope": "all", "batch_size": 2})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        busy = client.post("/embed_batch", json={"scope": "all"})
        assert busy.status_code == 409 and job_id in busy.json()["detail"]
        # a worker that died mid-job: state "running", stale heartbeat, 2 photos written
        jobs.update(job_id, state="running", heartbeat=time.time() - 60, done=2, started_at=time.time() - 70)
        with psycopg.connect(settings.production_db_url.get_secret_value()) as conn:
            conn.execute(
                "INSERT INTO unde_ai.sku_image_embeddings"
                " (sku, brand, image_url, image_index, embedding, model_version)"
                " VALUES ('SKU-0', 'zara', 'u', 0, %s::vector, %s)",
                ("[" + ",".join(["0.1"] * 512) + "]", settings.model_version),
            )
        redis.Redis.from_url(settings.redis_url.get_secret_value()).delete(
            "_kombu.binding.embed_batch", "embed_batch"
        )
        metrics_port = free_port()
        worker_env = {
            **os.environ,
            "UNDE_ENV_FILE": str(tmp_path / ".env"),
            "METRICS_PORT": str(metrics_port),
        }
        args = [sys.executable, "-m", "celery", "-A", "embed_batch.celery_app", "worker", "-Q", "embed_batch"]
        args += ["--pool", "solo", "--without-mingle", "--without-gossip"]
        worker = subprocess.Popen(
            args, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        output: list[str] = []
        threading.Thread(target=lambda: output.extend(worker.stdout or []), daemon=True).start()
        try:
            status: dict[str, Any] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = client.get("/status", params={"job_id": job_id}).json()
                if status["state"] in ("done", "failed"):
                    break
                time.sleep(0.5)
            assert status["state"] == "done", (status, "".join(output))
            assert status["errors"] == 1 and status["done"] == status["total"] - 1
            assert len(rows(settings.production_db_url.get_secret_value())) == 9  # resumed, nothing lost
            assert any("resuming an interrupted embedding job" in line for line in output), "".join(output)
            metrics = client.get("/metrics").text
        finally:
            stop_process(worker, timeout=20)
    for name in (
        "embed_batch_throughput_imgs_sec",
        "embed_batch_job_duration_sec",
        "embed_batch_errors 1.0",
        "sku_image_embeddings_count 9.0",
        "sku_image_embeddings_hnsw_size_bytes",
    ):
        assert name in metrics, name
