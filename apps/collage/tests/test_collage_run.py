"""process_collages / retry_failed against the project's staging schema (``collage`` login) and a
real S3-compatible server: full-resolution horizontal collage, JPEG q=95 4:4:4, statuses, faults
(missing or corrupt originals), retries and concurrent workers."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image, JpegImagePlugin
from psycopg.types.json import Jsonb

from collage import builder
from collage.runtime import Runtime
from collage.settings import CollageSettings
from unde_testkit.apptests import fetch_product, staging_database, truncated
from unde_testkit.catalog_testing import jpeg_bytes
from unde_testkit.testing import PostgresHandle, S3Handle

DB = "cat_collage"
BUCKET = "cat-collage"


@pytest.fixture(scope="module")
def staging(pg: PostgresHandle) -> tuple[str, str]:
    return staging_database(pg, DB, "collage", "unde_staging_collage")


@pytest.fixture
def db(staging: tuple[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with truncated(staging[0], "raw_products") as conn:
        yield conn


def make_runtime(staging: tuple[str, str], s3: S3Handle, tmp_path: Path, **overrides: Any) -> Runtime:
    values: dict[str, Any] = {
        "staging_db_url": staging[1],
        "s3_endpoint": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_access_key": s3.access_key,
        "s3_secret_key": s3.secret_key,
        "s3_bucket": BUCKET,
        "claim_chunk_size": 3,
        "data_dir": tmp_path / "data",
    }
    values.update(overrides)
    runtime = Runtime(CollageSettings(**values))
    runtime.store.ensure_bucket()
    return runtime


@pytest.fixture
def rt(staging: tuple[str, str], s3: S3Handle, tmp_path: Path) -> Runtime:
    return make_runtime(staging, s3, tmp_path)


def add_uploaded(
    db: psycopg.Connection[Any],
    rt: Runtime,
    external_id: str,
    sizes: list[tuple[int, int]],
    brand: str = "zara",
) -> int:
    urls = []
    for n, (w, h) in enumerate(sizes, start=1):
        key = builder.original_key(brand, external_id, n)
        rt.store.put_bytes(key, jpeg_bytes(w, h, f"{external_id}-{n}"), content_type="image/jpeg")
        urls.append(rt.public_url(key))
    row = db.execute(
        "INSERT INTO raw_products (source, external_id, brand, name, image_urls, image_status, scraped_at) "
        "VALUES (%s, %s, %s, 'Shirt', %s, 'uploaded', now()) RETURNING id",
        (f"apify_{brand}", external_id, brand, Jsonb(urls)),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def test_collage_is_full_resolution_q95_444(db: psycopg.Connection[Any], rt: Runtime) -> None:
    add_uploaded(db, rt, "P1", [(400, 600), (300, 500), (500, 650)])

    summary = builder.run(rt)

    assert (summary.products, summary.ready, summary.errors) == (1, 1, 0)
    row = fetch_product(db, "P1")
    assert row["image_status"] == "collage_ready" and row["error_message"] is None
    assert row["collage_url"] == rt.public_url("collages/zara/P1.jpg")
    img = Image.open(io.BytesIO(rt.store.get_bytes("collages/zara/P1.jpg")))
    assert isinstance(img, JpegImagePlugin.JpegImageFile)
    assert img.size == (1200, 650)  # widths add up, height of the tallest, nothing scaled
    assert JpegImagePlugin.get_sampling(img) == 0  # 4:4:4
    # quality 95: Pillow's q=95 luminance table starts with 2 (q=85 would give 5)
    assert img.quantization[0][0] == 2
    rgb = img.convert("RGB")
    assert rgb.getpixel((1199, 649)) != (255, 255, 255)  # the tallest photo fills the last column
    assert rgb.getpixel((450, 640)) == pytest.approx((255, 255, 255), abs=3)  # white under the shorter one
    assert rt.metrics.app.registry.get_sample_value("collage_queue_size") == 0
    assert rt.metrics.app.registry.get_sample_value("collage_processing_errors") == 0
    assert builder.run(rt).products == 0  # nothing left; re-running is a no-op


def test_faults_end_as_error_and_keep_image_urls(db: psycopg.Connection[Any], rt: Runtime) -> None:
    add_uploaded(db, rt, "M1", [(300, 300), (300, 300)])
    rt.store.delete(builder.original_key("zara", "M1", 2))
    add_uploaded(db, rt, "C1", [(300, 300)])
    rt.store.put_bytes(
        builder.original_key("zara", "C1", 1), b"\xff\xd8 not a jpeg", content_type="image/jpeg"
    )
    add_uploaded(db, rt, "OK", [(200, 300)])
    db.execute(
        "INSERT INTO raw_products (source, external_id, brand, image_urls, image_status, scraped_at) "
        "VALUES ('apify_zara', 'E1', 'zara', '[]', 'uploaded', now())"
    )

    summary = builder.run(rt)

    assert (summary.ready, summary.errors) == (1, 3)
    m1 = fetch_product(db, "M1")
    assert m1["image_status"] == "error" and m1["collage_attempts"] == 1
    assert "original 2" in m1["error_message"] and "NoSuchKey" in m1["error_message"]
    assert m1["image_urls"] is not None  # kept: tells the downloader's retry this is not its failure
    assert "does not decode" in fetch_product(db, "C1")["error_message"]
    assert "image_urls is empty" in fetch_product(db, "E1")["error_message"]
    assert rt.metrics.app.registry.get_sample_value("collage_processing_errors") == 0.75


def test_retry_failed_rebuilds_after_the_original_is_back(db: psycopg.Connection[Any], rt: Runtime) -> None:
    add_uploaded(db, rt, "R1", [(300, 300), (300, 400)])
    rt.store.delete(builder.original_key("zara", "R1", 1))
    builder.run(rt)
    assert fetch_product(db, "R1")["image_status"] == "error"
    assert builder.run(rt, retry=True).errors == 1  # still missing: attempts 2
    rt.store.put_bytes(builder.original_key("zara", "R1", 1), jpeg_bytes(300, 300), content_type="image/jpeg")
    summary = builder.run(rt, retry=True)
    assert summary.ready == 1
    row = fetch_product(db, "R1")
    assert (row["image_status"], row["collage_attempts"], row["error_message"]) == ("collage_ready", 0, None)
    db.execute(
        "UPDATE raw_products SET image_status = 'error', collage_attempts = 5 WHERE external_id = 'R1'"
    )
    assert builder.run(rt, retry=True).products == 0  # gave up after max_collage_attempts


def test_two_workers_never_take_the_same_product(
    db: psycopg.Connection[Any], staging: tuple[str, str], s3: S3Handle, tmp_path: Path
) -> None:
    workers = [make_runtime(staging, s3, tmp_path, claim_chunk_size=2) for _ in range(2)]
    for i in range(12):
        add_uploaded(db, workers[0], f"W{i}", [(200, 300), (200, 300)])
    results: list[builder.RunSummary] = []
    threads = [threading.Thread(target=lambda w=w: results.append(builder.run(w))) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r.ready for r in results) == 12 and sum(r.products for r in results) == 12
    ready = db.execute(
        "SELECT count(*) AS n FROM raw_products WHERE image_status = 'collage_ready'"
    ).fetchone()
    assert ready is not None and ready["n"] == 12


def test_max_width_setting_scales_down_only_when_set() -> None:
    images = [Image.new("RGB", (1000, 500), "red"), Image.new("RGB", (1000, 800), "blue")]
    assert builder.glue(images).size == (2000, 800)
    assert builder.glue(images, max_width=1000).size == (1000, 400)
    with pytest.raises(builder.CollageError, match="65500px"):
        builder.glue([Image.new("RGB", (40000, 10))] * 2)
