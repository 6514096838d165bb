"""Collages for try-on (spec 02 §5, 17.3; spec 01 day 4 wins on quality).

A run claims ``uploaded`` products in chunks (``FOR UPDATE SKIP LOCKED``, one transaction per
chunk: a killed worker's chunk stays ``uploaded``), reads each product's originals
``originals/{brand}/{external_id}/{n}.jpg`` from Object Storage, pastes them left to right on a
white canvas as tall as the tallest photo (no downscaling unless ``COLLAGE_MAX_WIDTH`` > 0), encodes
JPEG quality 95 with 4:4:4 chroma, uploads ``collages/{brand}/{external_id}.jpg`` and sets
``collage_url`` + ``collage_ready``; a failure sets ``error`` + ``error_message`` and keeps
``image_urls`` (that is how the downloader's retry tells the stages apart).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from psycopg.rows import DictRow

from collage.runtime import Runtime
from unde_common.catalog import Outcome, WorkQueue, guarded, work_through
from unde_common.s3 import ObjectStorageError
from unde_common.worker import empty_dir

log = logging.getLogger(__name__)

#: JPEG's hard limit on a side
JPEG_MAX_SIDE = 65_500

CLAIM_NEW = """
SELECT id, brand, external_id, image_urls
FROM raw_products
WHERE image_status = 'uploaded'
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

CLAIM_RETRY = """
SELECT id, brand, external_id, image_urls
FROM raw_products
WHERE image_status = 'error' AND image_urls IS NOT NULL AND collage_attempts < %s
  AND NOT (id = ANY(%s))  -- each product at most once per run
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

MARK_READY = """
UPDATE raw_products
SET image_status = 'collage_ready', collage_url = %s, error_message = NULL, collage_attempts = 0
WHERE id = %s
"""

MARK_ERROR = """
UPDATE raw_products
SET image_status = 'error', error_message = %s, collage_attempts = LEAST(collage_attempts + 1, 32767)
WHERE id = %s
"""

QUEUE_SIZE = "SELECT count(*) AS n FROM raw_products WHERE image_status = 'uploaded'"


class CollageError(Exception):
    """A collage could not be built."""


@dataclass
class RunSummary:
    task: str
    products: int = 0
    ready: int = 0
    errors: int = 0
    queue_left: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def original_key(brand: str, external_id: str, n: int) -> str:
    return f"originals/{brand}/{external_id}/{n}.jpg"


def collage_key(brand: str, external_id: str) -> str:
    return f"collages/{brand}/{external_id}.jpg"


def glue(images: Sequence[Image.Image], *, max_width: int = 0) -> Image.Image:
    """The images side by side, top-aligned, on white; scaled down only when ``max_width`` > 0."""
    if not images:
        raise CollageError("no images to glue")
    width = sum(img.width for img in images)
    height = max(img.height for img in images)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for img in images:
        canvas.paste(img.convert("RGB"), (x, 0))
        x += img.width
    if max_width and canvas.width > max_width:
        ratio = max_width / canvas.width
        canvas = canvas.resize((max_width, max(1, round(canvas.height * ratio))), Image.Resampling.LANCZOS)
    if max(canvas.size) > JPEG_MAX_SIDE:
        raise CollageError(f"collage {canvas.width}x{canvas.height} exceeds JPEG's {JPEG_MAX_SIDE}px limit")
    return canvas


def encode(canvas: Image.Image, *, quality: int, subsampling: int) -> bytes:
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=quality, subsampling=subsampling)
    return out.getvalue()


def build_one(rt: Runtime, row: DictRow) -> str:
    """Build and upload the collage of one product; returns its key (CollageError on failure)."""
    s = rt.settings
    urls = row["image_urls"]
    if not isinstance(urls, list) or not urls:
        raise CollageError("image_urls is empty or not a list")
    started = time.perf_counter()
    images: list[Image.Image] = []
    try:
        for n in range(1, len(urls) + 1):
            key = original_key(row["brand"], row["external_id"], n)
            try:
                data = rt.store.get_bytes(key)
            except ObjectStorageError as exc:
                raise CollageError(f"original {n}: {exc}") from exc
            try:
                img: Image.Image = Image.open(io.BytesIO(data))
                img.load()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise CollageError(f"original {n} ({key}) does not decode: {exc}") from exc
            images.append(img)
        canvas = glue(images, max_width=s.collage_max_width)
        data = encode(canvas, quality=s.collage_quality, subsampling=s.collage_subsampling)
    finally:
        for img in images:
            img.close()
    key = collage_key(row["brand"], row["external_id"])
    try:
        rt.store.put_bytes(key, data, content_type="image/jpeg")
    except ObjectStorageError as exc:
        raise CollageError(str(exc)) from exc
    rt.metrics.seconds.observe(time.perf_counter() - started)
    return key


QUEUE = WorkQueue(
    claim_new=CLAIM_NEW,
    claim_retry=CLAIM_RETRY,
    mark_ok=MARK_READY,
    mark_error=MARK_ERROR,
    waiting=QUEUE_SIZE,
    ok_result="collage_ready",
    failure_message="collage failed",
)


def _build(rt: Runtime, row: DictRow) -> Outcome[str]:
    try:
        key = build_one(rt, row)
    except CollageError as exc:
        return Outcome(row, error=str(exc))
    return Outcome(row, mark=(rt.public_url(key), row["id"]), value=key)


def run(rt: Runtime, *, retry: bool = False) -> RunSummary:
    """One process_collages (or retry_failed) run."""
    s = rt.settings
    build = guarded(lambda row: _build(rt, row), "collage")
    with ThreadPoolExecutor(s.collage_concurrency, "collage") as pool:
        tally = work_through(
            rt.connect,
            QUEUE,
            lambda _conn, rows: list(pool.map(build, rows)),
            rt.metrics.stage,
            retry=retry,
            max_attempts=s.max_collage_attempts,
            batch_size=s.batch_size,
            chunk_size=s.claim_chunk_size,
        )
    summary = RunSummary(
        "retry_failed" if retry else "process_collages",
        products=tally.products,
        ready=tally.ok,
        errors=tally.errors,
        queue_left=tally.waiting,
        seconds=tally.seconds,
    )
    log.info("collage run finished", extra=summary.as_dict())
    return summary


def cleanup_temp_files(rt: Runtime) -> int:
    """Empty ``data_dir`` (keeps the directory); returns the number of entries removed."""
    return empty_dir(rt.settings.data_dir)
