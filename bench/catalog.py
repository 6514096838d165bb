"""Benchmark of the catalog pipeline (``make bench-catalog``), JSON on stdout.

- photo downloader: ``download_pending`` over N products x 5 photos served by the loopback brand
  image host (catalog-sized JPEGs, ~300 KB: spec 02 §3 "5 photos x 300 KB"), validated with Pillow
  and uploaded to the S3-compatible server: photos downloaded+uploaded per second, MB/s;
- collage: ``process_collages`` over the same products (5 full-resolution originals each, JPEG q=95
  4:4:4): collages per second;
- memory: peak RSS of each worker run (each stage runs in its own process, as on its server);
- extrapolation: one weekly cycle of 47,000 SKUs x 5 photos at the measured rate and at the rate the
  spec 01 §18 schedule allows (download_pending every 15 min x BATCH_SIZE 200; process_collages every
  15 min x BATCH_SIZE 100), against the window between the last Apify run (Sunday 07:00, ~08:00 when
  it ends) and ximilar_sync (Sunday 10:00), and against the week.

Everything runs on loopback with throwaway servers (PostgreSQL 16 via pgserver, moto's S3 server).
The staging schema is the project's migrations; the workers use the real least-privilege logins.
``--products N`` (default 60), ``--width``/``--height`` of the photos (default 1200x1600).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

REPO = Path(__file__).resolve().parents[1]
WEEKLY_SKUS = 47_000
PHOTOS = 5
#: spec 01 §18 windows: Apify's last brand starts Sunday 07:00 (about an hour), ximilar_sync Sunday 10:00
WINDOW_BEFORE_XIMILAR_H = 2.0
WEEK_H = 7 * 24.0


def _download_stage(settings: dict[str, Any], out: Any) -> None:
    from photo_downloader import downloader
    from photo_downloader.runtime import Runtime
    from photo_downloader.settings import PhotoDownloaderSettings

    rt = Runtime(PhotoDownloaderSettings(**settings))
    started = time.perf_counter()
    total: dict[str, float] = {"products": 0, "photos": 0, "bytes": 0, "errors": 0}
    while True:
        summary = downloader.run(rt)
        if not summary.products:
            break
        for key in ("products", "photos", "bytes", "errors"):
            total[key] += getattr(summary, key)
    total["seconds"] = time.perf_counter() - started
    total["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(total)


def _collage_stage(settings: dict[str, Any], out: Any) -> None:
    from collage import builder
    from collage.runtime import Runtime
    from collage.settings import CollageSettings

    rt = Runtime(CollageSettings(**settings))
    started = time.perf_counter()
    total: dict[str, float] = {"products": 0, "ready": 0, "errors": 0}
    while True:
        summary = builder.run(rt)
        if not summary.products:
            break
        for key in ("products", "ready", "errors"):
            total[key] += getattr(summary, key)
    total["seconds"] = time.perf_counter() - started
    total["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(total)


def _in_process(target: Any, settings: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(settings, queue))
    proc.start()
    result: dict[str, Any] = queue.get(timeout=3600)
    proc.join(60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=60)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    args = parser.parse_args()

    from pydantic import SecretStr
    from unde_common.s3 import ObjectStore, S3Config
    from unde_testkit.catalog_testing import ImageHostSimulator, login_dsn, migrated_database
    from unde_testkit.testing import LoopbackServer, postgres_server, s3_server

    work = Path(tempfile.mkdtemp(prefix="unde-bench-catalog-"))
    os.chmod(work, 0o755)  # noqa: S103 - pgserver runs the server as its own user when we are root
    with (
        postgres_server(work / "pg") as pg,
        s3_server(work / "s3") as s3,
        LoopbackServer((sim := ImageHostSimulator(texture=0.15)).app) as host,
    ):
        staging = migrated_database(pg, "bench_catalog", "unde_staging")
        downloader_dsn = login_dsn(pg, "bench_catalog", "downloader", ["unde_staging_downloader"])
        collage_dsn = login_dsn(pg, "bench_catalog", "collage", ["unde_staging_collage"])
        s3_values = {
            "s3_endpoint": s3.endpoint_url,
            "s3_region": s3.region,
            "s3_access_key": s3.access_key,
            "s3_secret_key": s3.secret_key,
            "s3_bucket": "bench-catalog",
        }
        ObjectStore.from_config(
            S3Config(
                s3.endpoint_url,
                SecretStr(s3.access_key),
                SecretStr(s3.secret_key),
                "bench-catalog",
                s3.region,
            )
        ).ensure_bucket()
        with psycopg.connect(staging, autocommit=True) as conn:
            for i in range(args.products):
                urls = [sim.url(host.url, "ok", f"p{i}-{n}", args.width, args.height) for n in range(PHOTOS)]
                conn.execute(
                    "INSERT INTO raw_products (source, external_id, brand, name, original_image_urls, "
                    "scraped_at) VALUES ('apify_zara', %s, 'zara', 'Bench', %s, now())",
                    (f"B{i}", Jsonb(urls)),
                )
        # warm the host's cache so the simulator's JPEG encoding is not part of the measurement
        import httpx

        for i in range(args.products):
            for n in range(PHOTOS):
                httpx.get(sim.url(host.url, "ok", f"p{i}-{n}", args.width, args.height), timeout=60)
        photo_bytes = len(httpx.get(sim.url(host.url, "ok", "p0-0", args.width, args.height)).content)

        dl = _in_process(
            _download_stage, {"staging_db_url": downloader_dsn, **s3_values, "data_dir": str(work / "dl")}
        )
        cl = _in_process(
            _collage_stage, {"staging_db_url": collage_dsn, **s3_values, "data_dir": str(work / "cl")}
        )

    photos_per_s = dl["photos"] / dl["seconds"] if dl["seconds"] else 0.0
    collages_per_s = cl["ready"] / cl["seconds"] if cl["seconds"] else 0.0
    weekly_photos = WEEKLY_SKUS * PHOTOS
    download_h = weekly_photos / photos_per_s / 3600 if photos_per_s else None
    collage_h = WEEKLY_SKUS / collages_per_s / 3600 if collages_per_s else None
    # what the schedule lets through: a run every 15 min with BATCH_SIZE products (if a run finishes in time)
    sched_download_products_h = 4 * 200
    sched_collage_products_h = 4 * 100
    sched_download_h = WEEKLY_SKUS / min(sched_download_products_h, (photos_per_s * 3600 / PHOTOS) or 1)
    sched_collage_h = WEEKLY_SKUS / min(sched_collage_products_h, (collages_per_s * 3600) or 1)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "input": {
            "products": args.products,
            "photos_per_product": PHOTOS,
            "photo": f"{args.width}x{args.height}",
            "photo_bytes": photo_bytes,
        },
        "photo_downloader": {
            "photos": dl["photos"],
            "errors": dl["errors"],
            "seconds": round(dl["seconds"], 2),
            "photos_per_s": round(photos_per_s, 2),
            "mb_per_s": round(dl["bytes"] / 1e6 / dl["seconds"], 2) if dl["seconds"] else 0.0,
            "peak_rss_mb": round(dl["peak_rss_mb"], 1),
        },
        "collage": {
            "collages": cl["ready"],
            "errors": cl["errors"],
            "seconds": round(cl["seconds"], 2),
            "collages_per_s": round(collages_per_s, 3),
            "peak_rss_mb": round(cl["peak_rss_mb"], 1),
        },
        "weekly_cycle": {
            "skus": WEEKLY_SKUS,
            "photos": weekly_photos,
            "download_hours_at_measured_rate": round(download_h, 2) if download_h else None,
            "collage_hours_at_measured_rate": round(collage_h, 2) if collage_h else None,
            "download_hours_at_schedule_rate": round(sched_download_h, 1),
            "collage_hours_at_schedule_rate": round(sched_collage_h, 1),
            "schedule_rate_products_per_hour": {
                "download": sched_download_products_h,
                "collage": sched_collage_products_h,
            },
            "window_hours_before_ximilar_sync": WINDOW_BEFORE_XIMILAR_H,
            # ximilar_sync takes uploaded or collage_ready products: only the download must be done
            "fits_before_ximilar_sync": sched_download_h <= WINDOW_BEFORE_XIMILAR_H,
            # the stages run side by side (pipelined): the slower one bounds the cycle
            "fits_in_the_week": max(sched_download_h, sched_collage_h) <= WEEK_H,
            "note": (
                "rates measured on loopback (no internet latency, no proxy): the network to the brands' CDNs "
                "and the residential proxy bound the real download rate; the schedule rate assumes each run "
                "finishes within its 15 minutes"
            ),
        },
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
