"""Collect one brand (spec 02 §2, 17.1): Apify actor run → raw_products, one scraper_logs row.

1. A ``scraper_logs`` row (``status = 'running'``) is written first; after the actor starts it holds
   the Apify run id, dataset id and the dataset offset reached (``metadata``).
2. Wait for the run (aborted when it outlives ``APIFY_RUN_TIMEOUT_S``), then page through the
   dataset; each page is one transaction: upsert every item on ``(source, external_id)`` and
   advance the offset (dataset rows read, hidden/empty rows included) in the log row.
3. The row ends ``success`` / ``partial`` (some items malformed) / ``failed`` with counts, duration
   and the error.

A worker killed in the middle leaves the row ``running``: the next run of the brand (within
``APIFY_RESUME_WINDOW_HOURS``) resumes that Apify run from the recorded offset instead of paying for
a new one. Upserts are idempotent, so replaying a page is harmless.

Upsert rule: a new product, or one whose image list changed, gets ``image_status = 'pending'`` (the
downloader picks it up); a product whose catalog fields changed goes back to ``sync_status =
'pending'``; ``scraped_at`` (last seen, used by the 30-day cleanup) is refreshed for every item.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from apify.client import ApifyError, DatasetPage
from apify.collectors import COLLECTORS, BrandCollector, ItemError, ProductRecord
from apify.runtime import Runtime

log = logging.getLogger(__name__)

MAX_ITEM_ERRORS_KEPT = 20

FIND_RESUMABLE = """
SELECT id, run_id, metadata, records_fetched, records_new, records_updated, records_errors
FROM scraper_logs
WHERE scraper_name = %s AND status = 'running' AND run_id IS NOT NULL
  AND started_at > now() - make_interval(hours => %s)
ORDER BY started_at DESC
LIMIT 1
"""

EXISTING = """
SELECT external_id, name, description, price, currency, category, colour, sizes, composition,
       original_image_urls
FROM raw_products
WHERE source = %s AND external_id = ANY(%s)
"""

UPSERT = """
INSERT INTO raw_products (source, external_id, brand, name, description, price, currency, category,
                          colour, sizes, composition, original_image_urls, raw_data, scraped_at,
                          image_status)
VALUES (%(source)s, %(external_id)s, %(brand)s, %(name)s, %(description)s, %(price)s, %(currency)s,
        %(category)s, %(colour)s, %(sizes)s, %(composition)s, %(images)s, %(raw)s, now(), 'pending')
ON CONFLICT (source, external_id) DO UPDATE SET
    brand = EXCLUDED.brand,
    name = EXCLUDED.name,
    description = EXCLUDED.description,
    price = EXCLUDED.price,
    currency = EXCLUDED.currency,
    category = EXCLUDED.category,
    colour = EXCLUDED.colour,
    sizes = EXCLUDED.sizes,
    composition = EXCLUDED.composition,
    original_image_urls = EXCLUDED.original_image_urls,
    raw_data = EXCLUDED.raw_data,
    scraped_at = EXCLUDED.scraped_at,
    image_status = CASE
        WHEN raw_products.original_image_urls IS DISTINCT FROM EXCLUDED.original_image_urls THEN 'pending'
        ELSE raw_products.image_status END,
    sync_status = CASE
        WHEN (raw_products.name, raw_products.description, raw_products.price, raw_products.currency,
              raw_products.category, raw_products.colour, raw_products.sizes, raw_products.composition,
              raw_products.original_image_urls)
             IS DISTINCT FROM
             (EXCLUDED.name, EXCLUDED.description, EXCLUDED.price, EXCLUDED.currency, EXCLUDED.category,
              EXCLUDED.colour, EXCLUDED.sizes, EXCLUDED.composition, EXCLUDED.original_image_urls)
        THEN 'pending'
        ELSE raw_products.sync_status END
"""


@dataclass
class RunSummary:
    brand: str
    status: str = "running"
    run_id: str | None = None
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: int = 0
    resumed: bool = False
    seconds: float = 0.0
    error_message: str | None = None
    item_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        out["item_errors"] = self.item_errors[:MAX_ITEM_ERRORS_KEPT]
        return out


def _fields(rec: ProductRecord) -> tuple[Any, ...]:
    return (
        rec.name,
        rec.description,
        rec.price,
        rec.currency,
        rec.category,
        rec.colour,
        rec.sizes,
        rec.composition,
        rec.original_image_urls,
    )


def upsert_page(
    conn: psycopg.Connection[DictRow],
    collector: BrandCollector,
    page: DatasetPage,
    summary: RunSummary,
) -> None:
    """Upsert one dataset page (caller holds the transaction)."""
    records: dict[str, ProductRecord] = {}
    for position, item in zip(page.positions, page.items, strict=True):
        summary.fetched += 1
        try:
            rec = collector.map_item(item)
        except ItemError as exc:
            summary.errors += 1
            if len(summary.item_errors) < MAX_ITEM_ERRORS_KEPT:
                summary.item_errors.append(f"item {position}: {exc}")
            continue
        records[rec.external_id] = rec  # a repeated id in one page: the last item wins
    if not records:
        return
    existing = {
        row["external_id"]: row
        for row in conn.execute(EXISTING, (collector.source, list(records))).fetchall()
    }
    params = []
    for rec in records.values():
        old = existing.get(rec.external_id)
        if old is None:
            summary.new += 1
        elif tuple(old[k] for k in list(old)[1:]) != _fields(rec):
            summary.updated += 1
        else:
            summary.unchanged += 1
        params.append(
            {
                "source": collector.source,
                "external_id": rec.external_id,
                "brand": rec.brand,
                "name": rec.name,
                "description": rec.description,
                "price": rec.price,
                "currency": rec.currency,
                "category": rec.category,
                "colour": rec.colour,
                "sizes": Jsonb(rec.sizes),
                "composition": rec.composition,
                "images": Jsonb(rec.original_image_urls),
                "raw": Jsonb(dict(rec.raw)),
            }
        )
    with conn.cursor() as cur:
        cur.executemany(UPSERT, params)


def _save_progress(
    conn: psycopg.Connection[DictRow], log_id: int, summary: RunSummary, meta: dict[str, Any]
) -> None:
    conn.execute(
        """
        UPDATE scraper_logs
        SET records_fetched = %s, records_new = %s, records_updated = %s, records_errors = %s,
            metadata = %s
        WHERE id = %s
        """,
        (summary.fetched, summary.new, summary.updated, summary.errors, Jsonb(meta), log_id),
    )


def collect(rt: Runtime, brand: str) -> RunSummary:
    """Collect ``brand`` once; never raises for provider failures (they end in the log row)."""
    collector = COLLECTORS[brand]
    s = rt.settings
    summary = RunSummary(brand)
    t0 = time.monotonic()
    with rt.connect() as conn:
        resumable = conn.execute(
            FIND_RESUMABLE, (collector.scraper_name, s.apify_resume_window_hours)
        ).fetchone()
        if resumable is not None:
            log_id = int(resumable["id"])
            meta = dict(resumable["metadata"] or {})
            summary.run_id = resumable["run_id"]
            summary.resumed = True
            summary.fetched = resumable["records_fetched"] or 0
            summary.new = resumable["records_new"] or 0
            summary.updated = resumable["records_updated"] or 0
            summary.errors = resumable["records_errors"] or 0
            summary.item_errors = list(meta.get("item_errors", []))
            log.info("resuming apify run", extra={"brand": brand, "run_id": summary.run_id})
        else:
            row = conn.execute(
                "INSERT INTO scraper_logs (scraper_name, status, started_at, metadata) "
                "VALUES (%s, 'running', now(), %s) RETURNING id",
                (collector.scraper_name, Jsonb({"actor": collector.actor(s)})),
            ).fetchone()
            assert row is not None
            log_id = int(row["id"])
            meta = {"actor": collector.actor(s)}
        try:
            if summary.run_id is None:
                # the start's User-Agent names this log row: a lost answer is found by it
                marker = f"unde-apify/{collector.scraper_name}/{log_id}/{uuid.uuid4().hex[:12]}"
                run = rt.apify.start_run(collector.actor(s), collector.run_input(s), marker=marker)
                summary.run_id = str(run["id"])
                meta.update(dataset_id=run["defaultDatasetId"], offset=0)
                conn.execute(
                    "UPDATE scraper_logs SET run_id = %s, metadata = %s WHERE id = %s",
                    (summary.run_id, Jsonb(meta), log_id),
                )
            rt.apify.wait_run(summary.run_id, timeout_s=s.apify_run_timeout_s)
            dataset_id = str(meta["dataset_id"])
            start = int(meta.get("offset", 0))
            for page in rt.apify.iter_pages(dataset_id, offset=start, page_size=s.apify_page_size):
                with conn.transaction():
                    upsert_page(conn, collector, page, summary)
                    meta.update(offset=page.next_offset, item_errors=summary.item_errors)
                    _save_progress(conn, log_id, summary, meta)
            summary.status = "partial" if summary.errors else "success"
        except ApifyError as exc:
            summary.status = "failed"
            summary.error_message = str(exc)
            log.error("apify collection failed", extra={"brand": brand, "error": str(exc)})
        except (KeyError, ValueError, TypeError) as exc:  # a log row with unusable metadata
            summary.status = "failed"
            summary.error_message = f"cannot resume run {summary.run_id}: {exc.__class__.__name__}: {exc}"
        if summary.status == "partial" and not summary.error_message:
            summary.error_message = f"{summary.errors} malformed item(s); first: {summary.item_errors[0]}"
        meta["item_errors"] = summary.item_errors
        meta.update(unchanged=summary.unchanged, resumed=summary.resumed)
        done = conn.execute(
            """
            UPDATE scraper_logs
            SET status = %s, completed_at = now(),
                duration_seconds = GREATEST(0, round(extract(epoch FROM now() - started_at)))::int,
                records_fetched = %s, records_new = %s, records_updated = %s, records_errors = %s,
                error_message = %s, metadata = %s
            WHERE id = %s
            RETURNING duration_seconds
            """,
            (
                summary.status,
                summary.fetched,
                summary.new,
                summary.updated,
                summary.errors,
                summary.error_message,
                Jsonb(meta),
                log_id,
            ),
        ).fetchone()
    summary.seconds = time.monotonic() - t0
    duration = float(done["duration_seconds"]) if done else summary.seconds
    rt.metrics.duration.labels(brand).set(max(duration, summary.seconds))
    ratio = (
        1.0 if summary.status == "failed" else (summary.errors / summary.fetched if summary.fetched else 0.0)
    )
    rt.metrics.error_ratio.labels(brand).set(ratio)
    rt.metrics.runs.labels(brand, summary.status).inc()
    for result in ("new", "updated", "unchanged", "errors"):
        rt.metrics.items.labels(brand, result).inc(getattr(summary, result))
    log.info("apify collection finished", extra=summary.as_dict())
    return summary
