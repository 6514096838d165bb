"""Spec 01 day 6, flow a-e, end to end for 100 Zara products: the five catalog apps run as Celery
workers on a real Redis broker, each with its own least-privilege database login, against the
project's staging and production schemas, a real S3-compatible server and loopback Apify, brand
image host, Ximilar and Inditex mobile API simulators.

collect (apify) → download (photo_downloader) → collage → Ximilar sync → availability poll →
production sync (scraper); then every row and every object is checked."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from PIL import Image
from psycopg.rows import dict_row
from pydantic import SecretStr

from apify.celery_app import make_celery as apify_celery
from apify.settings import ApifySettings
from collage.celery_app import make_celery as collage_celery
from collage.settings import CollageSettings
from photo_downloader.celery_app import make_celery as downloader_celery
from photo_downloader.settings import PhotoDownloaderSettings
from scraper.celery_app import make_celery as scraper_celery
from scraper.settings import ScraperSettings
from unde_common.s3 import ObjectStore, S3Config
from unde_testkit.catalog_testing import (
    ApifySimulator,
    ImageHostSimulator,
    XimilarSimulator,
    ZaraSimulator,
    apify_item,
    login_dsn,
    migrated_database,
)
from unde_testkit.testing import LoopbackServer, PostgresHandle, S3Handle
from ximilar_sync.celery_app import make_celery as ximilar_celery
from ximilar_sync.settings import XimilarSyncSettings

N = 100
PHOTOS = 5
W, H = 120, 160
STAGING, MAIN = "cat_e2e_staging", "cat_e2e_main"
BUCKET = "cat-e2e"
STORES = [6643, 9204, 9073, 16546]
OUT_OF_STOCK = {f"{700000 + i}" for i in range(0, N, 10)}  # every tenth product: no stock in KZ


@pytest.fixture(scope="module")
def env(
    pg: PostgresHandle, s3: S3Handle, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    staging_su = migrated_database(pg, STAGING, "unde_staging")
    main_su = migrated_database(pg, MAIN, "unde_main")
    logins = {
        user: login_dsn(pg, STAGING, user, [f"unde_staging_{user}"])
        for user in ("apify", "downloader", "collage", "ximilar")
    }
    scraper_groups = ["unde_staging_scraper", "unde_main_scraper"]
    logins["scraper"] = login_dsn(pg, STAGING, "scraper", scraper_groups)
    logins["scraper_main"] = login_dsn(pg, MAIN, "scraper", scraper_groups)
    store = ObjectStore.from_config(
        S3Config(
            s3.endpoint_url,
            SecretStr(s3.access_key),
            SecretStr(s3.secret_key),
            bucket=BUCKET,
            region=s3.region,
        )
    )
    store.ensure_bucket()
    sims: dict[str, Any] = {
        "apify": ApifySimulator(),
        "img": ImageHostSimulator(),
        "ximilar": XimilarSimulator(),
        "zara": ZaraSimulator(),
    }
    with ExitStack() as stack:
        urls = {name: stack.enter_context(LoopbackServer(sim.app)).url for name, sim in sims.items()}
        yield {
            "staging_su": staging_su,
            "main_su": main_su,
            "logins": logins,
            "sims": sims,
            "urls": urls,
            "store": store,
            "broker": redis_url.rsplit("/", 1)[0] + "/5",
            "tmp": Path(tmp_path_factory.mktemp("e2e")),
        }


def _apps(env: dict[str, Any], s3: S3Handle) -> dict[str, Celery]:
    common: dict[str, Any] = {
        "redis_url": env["broker"],
        "metrics_enabled": False,
        "http_backoff_base_s": 0.05,
        "environment": "test",
    }
    s3_values: dict[str, Any] = {
        "s3_endpoint": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_access_key": s3.access_key,
        "s3_secret_key": s3.secret_key,
        "s3_bucket": BUCKET,
    }
    logins, urls = env["logins"], env["urls"]
    return {
        "apify": apify_celery(
            ApifySettings(
                **common,
                staging_db_url=logins["apify"],
                apify_base_url=urls["apify"] + "/v2",
                apify_token=SecretStr("apify-test-token"),
                apify_wait_poll_s=0,
                apify_page_size=40,
            )
        ),
        "photo_downloader": downloader_celery(
            PhotoDownloaderSettings(
                **common,
                **s3_values,
                staging_db_url=logins["downloader"],
                data_dir=env["tmp"] / "dl",
                # the brand image host simulator runs on loopback, which production refuses
                download_allow_networks=["127.0.0.0/8"],
            )
        ),
        "collage": collage_celery(
            CollageSettings(
                **common, **s3_values, staging_db_url=logins["collage"], data_dir=env["tmp"] / "cl"
            )
        ),
        "ximilar_sync": ximilar_celery(
            XimilarSyncSettings(
                **common,
                staging_db_url=logins["ximilar"],
                ximilar_base_url=urls["ximilar"],
                ximilar_api_token=SecretStr("ximilar-test-token"),
                ximilar_collection_id="coll-test",
            )
        ),
        "scraper": scraper_celery(
            ScraperSettings(
                **common,
                staging_db_url=logins["scraper"],
                production_db_url=logins["scraper_main"],
                zara_api_base_url=urls["zara"],
            )
        ),
    }


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_day6_flow_a_to_e_for_100_zara_products(
    env: dict[str, Any], s3: S3Handle, restore_root_logging: None
) -> None:
    sims: dict[str, Any] = env["sims"]
    img: ImageHostSimulator = sims["img"]
    ids = [f"{700000 + i}" for i in range(N)]
    items = [
        apify_item(
            "zara", ext, [img.url(env["urls"]["img"], "ok", f"{ext}-{n}", W, H) for n in range(1, PHOTOS + 1)]
        )
        for ext in ids
    ]
    sims["apify"].datasets["datasaurus/zara"] = items
    for item in items:  # stock of the first colour (800) in two stores
        in_kz = item["id"] not in OUT_OF_STOCK
        sims["zara"].stock_item(item, {"800": {6643: {"S": 2}, 9204: {"M": 1}}} if in_kz else {})
    apps = _apps(env, s3)
    staging = psycopg.connect(env["staging_su"], autocommit=True, row_factory=dict_row)
    prod = psycopg.connect(env["main_su"], autocommit=True, row_factory=dict_row)

    def count(sql: str, conn: psycopg.Connection[Any] = staging) -> int:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row["n"])

    def stage(app: str, tasks: list[str], done: Callable[[], bool], what: str) -> None:
        # one worker at a time: in production each app is its own process on its own host; several
        # Celery apps' workers in one test process would share Celery's process-wide current app
        with start_worker(apps[app], pool="solo", perform_ping_check=False, shutdown_timeout=30):
            for task in tasks:
                apps[app].send_task(task)
            wait_for(done, what)

    def n_products(where: str) -> Callable[[], bool]:
        query = f"SELECT count(*) AS n FROM raw_products WHERE {where}"  # noqa: S608 - constant fragments
        return lambda: count(query) == N

    # a. Apify: collect 100 Zara products (metadata)
    stage(
        "apify",
        ["apify.apify_zara"],
        lambda: count("SELECT count(*) AS n FROM scraper_logs WHERE status <> 'running'") == 1,
        "apify",
    )
    # b. photo downloader
    stage(
        "photo_downloader",
        ["photo_downloader.download_pending"],
        n_products("image_status = 'uploaded'"),
        "photos",
    )
    # d. collage (the order: collage before the Ximilar sync); the second run finds nothing
    stage(
        "collage",
        ["collage.process_collages", "collage.process_collages"],
        n_products("image_status = 'collage_ready'"),
        "collages",
    )
    # c. Ximilar sync
    stage("ximilar_sync", ["ximilar_sync.ximilar_sync"], n_products("ximilar_status = 'synced'"), "ximilar")
    # availability poll, then e. sync to production
    stage(
        "scraper",
        ["scraper.availability_poll", "scraper.sync_to_production"],
        n_products("sync_status IN ('synced', 'skipped')"),
        "production sync",
    )

    # ---- every staging row
    rows = staging.execute("SELECT * FROM raw_products ORDER BY external_id").fetchall()
    assert [r["external_id"] for r in rows] == ids
    base = f"{s3.endpoint_url}/{BUCKET}"
    for r in rows:
        ext = r["external_id"]
        assert (r["source"], r["brand"], r["image_status"], r["ximilar_status"]) == (
            "apify_zara",
            "zara",
            "collage_ready",
            "synced",
        ), ext
        assert r["image_urls"] == [f"{base}/originals/zara/{ext}/{n}.jpg" for n in range(1, PHOTOS + 1)]
        assert r["collage_url"] == f"{base}/collages/zara/{ext}.jpg"
        assert (
            r["error_message"] is None
            and r["ximilar_error_message"] is None
            and r["sync_error_message"] is None
        )
        assert r["sync_status"] == ("skipped" if ext in OUT_OF_STOCK else "synced"), ext
    log = staging.execute("SELECT * FROM scraper_logs WHERE scraper_name = 'apify_zara'").fetchone()
    assert log is not None and (log["status"], log["records_fetched"], log["records_new"]) == (
        "success",
        N,
        N,
    )
    assert count("SELECT count(*) AS n FROM raw_availability") == N * len(STORES)

    # ---- every object
    store: ObjectStore = env["store"]
    keys = set(store.list_keys(""))
    assert keys == {f"originals/zara/{e}/{n}.jpg" for e in ids for n in range(1, PHOTOS + 1)} | {
        f"collages/zara/{e}.jpg" for e in ids
    }
    for ext in ids[:10]:
        collage = Image.open(io.BytesIO(store.get_bytes(f"collages/zara/{ext}.jpg")))
        assert (collage.format, collage.size) == ("JPEG", (W * PHOTOS, H))
    assert img.hits and all(v == 1 for v in img.hits.values())  # each photo downloaded exactly once

    # ---- Ximilar collection: every image, with the sku's metadata
    records = sims["ximilar"].records
    assert set(records) == {f"{e}_{n}" for e in ids for n in range(1, PHOTOS + 1)}
    first = records[f"{ids[1]}_1"]
    assert (first["sku_id"], first["brand"], first["price"], first["image_index"]) == (
        ids[1],
        "zara",
        "15990.00",
        1,
    )
    assert first["store"] == ""  # the sync ran before the first availability poll (day 6 order)
    assert records[f"{ids[1]}_3"]["_url"] == f"{base}/originals/zara/{ids[1]}/3.jpg"

    # ---- production: the in-stock products, nothing else
    products = {p["sku"]: p for p in prod.execute("SELECT * FROM products").fetchall()}
    assert set(products) == set(ids) - OUT_OF_STOCK
    sample = products[ids[1]]
    assert sample["in_stock"] and sample["collage_url"] == f"{base}/collages/zara/{ids[1]}.jpg"
    assert sample["image_urls"] == [f"{base}/originals/zara/{ids[1]}/{n}.jpg" for n in range(1, PHOTOS + 1)]
    assert set(sample["availability"]) == {"6643", "9204"}
    staging.close()
    prod.close()
