"""download_pending / download_retry against a real staging schema (the project's migrations, the
least-privilege ``downloader`` login), a real S3-compatible server and a loopback brand image host
that injects every fault: 404, 5xx, 429 + Retry-After, timeouts, truncated bodies, HTML instead of
an image, undecodable bytes, tiny images. Also: two workers never take the same product, and a
worker killed mid-batch leaves every product resumable."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image
from psycopg.types.json import Jsonb

from photo_downloader import downloader
from photo_downloader.runtime import Runtime
from photo_downloader.settings import PhotoDownloaderSettings
from unde_testkit.apptests import fetch_product, serving, staging_database, truncated
from unde_testkit.catalog_testing import ImageHostSimulator
from unde_testkit.testing import PostgresHandle, S3Handle

DB = "cat_photo_downloader"
LOOPBACK = "127.0.0.1/32"
BUCKET = "cat-photo-downloader"


@pytest.fixture(scope="module")
def staging(pg: PostgresHandle) -> tuple[str, str]:
    return staging_database(pg, DB, "downloader", "unde_staging_downloader")


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[ImageHostSimulator, str]]:
    yield from serving(ImageHostSimulator())


@pytest.fixture
def db(staging: tuple[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with truncated(staging[0], "raw_products") as conn:
        yield conn


def _settings(
    staging: tuple[str, str], s3: S3Handle, tmp_path: Path, **overrides: Any
) -> PhotoDownloaderSettings:
    values: dict[str, Any] = {
        "staging_db_url": staging[1],
        "s3_endpoint": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_access_key": s3.access_key,
        "s3_secret_key": s3.secret_key,
        "s3_bucket": BUCKET,
        "download_timeout": 1.5,
        "max_retries": 2,
        "download_backoff_base_s": 0.05,
        "download_backoff_max_s": 0.2,
        "claim_chunk_size": 5,
        "data_dir": tmp_path / "data",
        # the brand image host simulator runs on loopback, which production refuses
        "download_allow_networks": LOOPBACK,
    }
    values.update(overrides)
    return PhotoDownloaderSettings(**values)


@pytest.fixture
def rt(staging: tuple[str, str], s3: S3Handle, tmp_path: Path) -> Runtime:
    runtime = Runtime(_settings(staging, s3, tmp_path))
    runtime.store.ensure_bucket()
    return runtime


def add_product(db: psycopg.Connection[Any], external_id: str, urls: Any, brand: str = "zara") -> int:
    row = db.execute(
        "INSERT INTO raw_products (source, external_id, brand, name, original_image_urls, scraped_at) "
        "VALUES (%s, %s, %s, 'Dress', %s, now()) RETURNING id",
        (f"apify_{brand}", external_id, brand, Jsonb(urls)),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def metric(rt: Runtime, name: str) -> float:
    value = rt.metrics.app.registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_downloads_validates_and_uploads(
    db: psycopg.Connection[Any], rt: Runtime, host: tuple[ImageHostSimulator, str], s3: S3Handle
) -> None:
    sim, base = host
    add_product(
        db,
        "A1",
        [
            sim.url(base, "ok", "a1-1", 400, 600),
            sim.url(base, "png", "a1-2", 300, 500),
            sim.url(base, "ok", "a1-3"),
        ],
    )
    add_product(db, "B7", [sim.url(base, "ok", f"b7-{i}", 200, 200) for i in range(7)], brand="bershka")

    summary = downloader.run(rt)

    assert (summary.products, summary.uploaded, summary.errors, summary.photos) == (2, 2, 0, 8)
    a1 = fetch_product(db, "A1")
    assert a1["image_status"] == "uploaded" and a1["error_message"] is None
    base_url = f"{s3.endpoint_url}/{BUCKET}"
    assert a1["image_urls"] == [f"{base_url}/originals/zara/A1/{n}.jpg" for n in (1, 2, 3)]
    b7 = fetch_product(db, "B7")
    assert b7["image_urls"] == [f"{base_url}/originals/bershka/B7/{n}.jpg" for n in range(1, 6)]  # ≤ 5
    keys = sorted(rt.store.list_keys("originals/"))
    assert len(keys) == 8
    first = Image.open(io.BytesIO(rt.store.get_bytes("originals/zara/A1/1.jpg")))
    assert (first.format, first.size) == ("JPEG", (400, 600))
    converted = Image.open(io.BytesIO(rt.store.get_bytes("originals/zara/A1/2.jpg")))
    assert (converted.format, converted.size) == ("JPEG", (300, 500))  # the PNG became a JPEG
    assert rt.store.head("originals/zara/A1/2.jpg")["ContentType"] == "image/jpeg"  # type: ignore[index]
    assert metric(rt, "photo_download_pending_count") == 0
    assert metric(rt, "photo_download_errors") == 0
    assert metric(rt, "photo_download_speed_mbps") > 0
    assert (
        rt.metrics.app.registry.get_sample_value(
            "photo_download_photos_total", {"brand": "bershka", "result": "uploaded"}
        )
        == 5
    )

    # re-running finds nothing to do; uploaded products stay as they are
    again = downloader.run(rt)
    assert again.products == 0 and fetch_product(db, "A1")["image_status"] == "uploaded"


FAULTS = {
    "404": "HTTP 404",
    "500": "HTTP 500 after 3 attempt(s)",
    "html": "wrong content type 'text/html'",
    "garbage": "not a decodable image",
    "tiny": "image too small (10x10",
    "truncated": "after 3 attempt(s)",
    "slow": "ReadTimeout",
}


def test_each_fault_ends_as_error_with_a_readable_message(
    db: psycopg.Connection[Any], rt: Runtime, host: tuple[ImageHostSimulator, str]
) -> None:
    sim, base = host
    for fault in FAULTS:
        extra = {"delay": 3} if fault == "slow" else {}
        add_product(
            db,
            f"F-{fault}",
            [sim.url(base, "ok", f"f-{fault}-1"), sim.url(base, fault, f"f-{fault}", **extra)],
        )
    add_product(db, "F-empty", [])
    add_product(db, "F-notalist", {"url": "x"})
    add_product(db, "F-ftp", ["ftp://example.invalid/x.jpg"])

    summary = downloader.run(rt)

    assert summary.products == len(FAULTS) + 3
    assert summary.errors == len(FAULTS) + 3 and summary.uploaded == 0
    for fault, expected in FAULTS.items():
        row = fetch_product(db, f"F-{fault}")
        assert row["image_status"] == "error", fault
        assert row["error_message"].startswith("photo 2 ("), row["error_message"]
        assert expected in row["error_message"], (fault, row["error_message"])
        assert row["image_urls"] is None and row["download_attempts"] == 1
    assert "no original image URLs" in fetch_product(db, "F-empty")["error_message"]
    assert "not a list" in fetch_product(db, "F-notalist")["error_message"]
    assert "not an http(s) URL" in fetch_product(db, "F-ftp")["error_message"]
    assert sim.hits["/img/500/f-500"] == 3  # first try + max_retries
    assert sim.hits["/img/404/f-404"] == 1  # a 404 is not retried
    assert metric(rt, "photo_download_errors") == 1.0


def test_transient_faults_are_retried_with_backoff_and_retry_after(
    db: psycopg.Connection[Any], rt: Runtime, host: tuple[ImageHostSimulator, str]
) -> None:
    sim, base = host
    add_product(db, "T1", [sim.url(base, "flaky", "t1"), sim.url(base, "ratelimited", "t1b")])
    started = time.monotonic()
    summary = downloader.run(rt)
    assert summary.uploaded == 1, fetch_product(db, "T1")["error_message"]
    assert sim.hits["/img/flaky/t1"] == 3 and sim.hits["/img/ratelimited/t1b"] == 2
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured


def test_retry_takes_download_errors_only_and_stops_after_max_attempts(
    db: psycopg.Connection[Any], rt: Runtime, host: tuple[ImageHostSimulator, str]
) -> None:
    sim, base = host
    fixed = add_product(db, "R1", [sim.url(base, "404", "r1")])
    given_up = add_product(db, "R2", [sim.url(base, "404", "r2")])
    collage_failed = add_product(db, "R3", [sim.url(base, "ok", "r3")])
    downloader.run(rt)
    db.execute(
        "UPDATE raw_products SET original_image_urls = %s WHERE id = %s",
        (Jsonb([sim.url(base, "ok", "r1")]), fixed),
    )
    db.execute("UPDATE raw_products SET download_attempts = 5 WHERE id = %s", (given_up,))
    db.execute(
        "UPDATE raw_products SET image_status = 'error', error_message = 'collage: x' WHERE id = %s",
        (collage_failed,),
    )

    summary = downloader.run(rt, retry=True)

    assert summary.products == 1 and summary.uploaded == 1
    r1 = fetch_product(db, "R1")
    assert (r1["image_status"], r1["download_attempts"], r1["error_message"]) == ("uploaded", 0, None)
    assert fetch_product(db, "R2")["image_status"] == "error"  # attempts exhausted: left visible in error
    assert fetch_product(db, "R3")["error_message"] == "collage: x"  # the collage stage's error is not ours


def test_two_workers_never_take_the_same_product(
    db: psycopg.Connection[Any],
    staging: tuple[str, str],
    s3: S3Handle,
    tmp_path: Path,
    host: tuple[ImageHostSimulator, str],
) -> None:
    sim, base = host
    for i in range(24):
        add_product(db, f"C{i}", [sim.url(base, "slow", f"c{i}-{n}", delay=0.1) for n in range(2)])
    workers = [Runtime(_settings(staging, s3, tmp_path, claim_chunk_size=3)) for _ in range(2)]
    results: list[downloader.RunSummary] = []
    threads = [threading.Thread(target=lambda w=w: results.append(downloader.run(w))) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sum(r.uploaded for r in results) == 24 and all(r.uploaded for r in results)  # both worked
    assert all(sim.hits[f"/img/slow/c{i}-{n}"] == 1 for i in range(24) for n in range(2))  # nobody twice
    statuses = db.execute("SELECT image_status, count(*) AS n FROM raw_products GROUP BY 1").fetchall()
    assert [(r["image_status"], r["n"]) for r in statuses] == [("uploaded", 24)]


def test_a_worker_killed_mid_batch_leaves_products_resumable(
    db: psycopg.Connection[Any],
    rt: Runtime,
    staging: tuple[str, str],
    s3: S3Handle,
    tmp_path: Path,
    host: tuple[ImageHostSimulator, str],
) -> None:
    sim, base = host
    for i in range(6):
        add_product(db, f"K{i}", [sim.url(base, "ok", f"k{i}-1"), sim.url(base, "slow", f"k{i}-2", delay=3)])
    env_file = tmp_path / ".env"
    settings = _settings(staging, s3, tmp_path)
    env_file.write_text(
        "\n".join(
            [
                f"STAGING_DB_URL={staging[1]}",
                f"S3_ENDPOINT={s3.endpoint_url}",
                f"S3_REGION={s3.region}",
                f"S3_ACCESS_KEY={s3.access_key}",
                f"S3_SECRET_KEY={s3.secret_key}",
                f"S3_BUCKET={BUCKET}",
                f"DOWNLOAD_TIMEOUT={settings.download_timeout * 10}",
                f"DATA_DIR={tmp_path}",
                f"DOWNLOAD_ALLOW_NETWORKS={LOOPBACK}",
            ]
        )
    )
    code = (
        "from photo_downloader import downloader; from photo_downloader.runtime import Runtime; "
        "from photo_downloader.settings import PhotoDownloaderSettings as S; "
        "downloader.run(Runtime(S.load()))"
    )
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "UNDE_ENV_FILE": str(env_file)})
    try:
        deadline = time.monotonic() + 30
        while sum(sim.hits[f"/img/slow/k{i}-2"] for i in range(6)) < 5:  # mid-batch: slow photos in flight
            assert child.poll() is None and time.monotonic() < deadline, "the worker never got going"
            time.sleep(0.05)
        locked = db.execute(
            "SELECT count(*) AS n FROM raw_products WHERE image_status = 'pending'"
        ).fetchone()
        assert locked is not None and locked["n"] == 6
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    # every product is still pending (its chunk's transaction died with the worker), none half-done
    rows = db.execute("SELECT image_status, image_urls FROM raw_products ORDER BY id").fetchall()
    assert all(r["image_status"] == "pending" and r["image_urls"] is None for r in rows)
    for i in range(6):  # the host recovered
        db.execute(
            "UPDATE raw_products SET original_image_urls = %s WHERE external_id = %s",
            (Jsonb([sim.url(base, "ok", f"k{i}-1"), sim.url(base, "ok", f"k{i}-2")]), f"K{i}"),
        )
    summary = downloader.run(rt)
    assert summary.uploaded == 6 and summary.errors == 0


def test_cleanup_temp_files_empties_the_data_dir(rt: Runtime) -> None:
    root = rt.settings.data_dir
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "x.jpg").write_bytes(b"x")
    (root / "y.jpg").write_bytes(b"y")
    assert downloader.cleanup_temp_files(rt) == 2
    assert root.is_dir() and not any(root.iterdir())
