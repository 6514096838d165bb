"""Hourly sync to production (spec 02 §17.4): staging products with a collage and stock in a
Kazakhstan store (availability fresher than ``AVAILABILITY_FRESH_HOURS``) → production ``products``.

Per chunk (one staging transaction holding ``FOR UPDATE OF p SKIP LOCKED`` on the claimed rows):

1. upsert each product into production (``ON CONFLICT (sku)``, ``sku`` = the external id; a sku owned
   by another brand is refused, never overwritten) and commit production;
2. mark the staging rows ``synced`` (``synced_at``), or ``error`` + ``sync_error_message`` +
   ``sync_attempts``, and commit staging.

Killed between 1 and 2, the next run re-upserts the same rows (idempotent). A product is picked again
when new availability arrives after its last sync (hourly polls keep stock current), after an error
(up to ``MAX_SYNC_ATTEMPTS``), or when Apify changed it (``sync_status`` back to pending).
Collage-ready products without fresh stock are marked ``skipped``; production products whose
availability went stale are set ``in_stock = false``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from scraper.runtime import Runtime

log = logging.getLogger(__name__)

CLAIM = """
WITH fresh AS (
    SELECT brand, product_id,
           jsonb_object_agg(
               store_id::text, jsonb_build_object('sizes', sizes_in_stock, 'fetched_at', fetched_at)
           ) AS availability,
           max(fetched_at) AS fetched_at
    FROM raw_availability
    WHERE fetched_at > now() - make_interval(hours => %(fresh)s)
      AND jsonb_typeof(sizes_in_stock) = 'array' AND jsonb_array_length(sizes_in_stock) > 0
    GROUP BY brand, product_id
)
SELECT p.id, p.source, p.external_id, p.brand, p.name, p.description, p.price, p.currency,
       p.category, p.colour, p.sizes, p.composition, p.image_urls, p.collage_url,
       f.availability, f.fetched_at
FROM raw_products p
JOIN fresh f ON f.brand = p.brand AND f.product_id = p.external_id
WHERE p.image_status = 'collage_ready'
  AND NOT (p.id = ANY(%(seen)s))
  AND (p.sync_status IN ('pending', 'skipped')
       OR (p.sync_status = 'synced' AND (p.synced_at IS NULL OR f.fetched_at > p.synced_at))
       OR (p.sync_status = 'error' AND p.sync_attempts < %(max_attempts)s))
ORDER BY p.id
LIMIT %(limit)s
FOR UPDATE OF p SKIP LOCKED
"""

MARK_SKIPPED = """
UPDATE raw_products SET sync_status = 'skipped'
WHERE id IN (
    SELECT p.id FROM raw_products p
    WHERE p.image_status = 'collage_ready' AND p.sync_status = 'pending'
      AND NOT EXISTS (
          SELECT 1 FROM raw_availability a
          WHERE a.brand = p.brand AND a.product_id = p.external_id
            AND a.fetched_at > now() - make_interval(hours => %s)
            AND jsonb_typeof(a.sizes_in_stock) = 'array' AND jsonb_array_length(a.sizes_in_stock) > 0)
    FOR UPDATE SKIP LOCKED)
"""

UPSERT_PRODUCT = """
INSERT INTO products (sku, brand, source, staging_id, name, description, price, currency, category,
                      colour, sizes, composition, image_url, image_urls, collage_url, availability,
                      in_stock, availability_updated_at, synced_at)
VALUES (%(sku)s, %(brand)s, %(source)s, %(staging_id)s, %(name)s, %(description)s, %(price)s,
        %(currency)s, %(category)s, %(colour)s, %(sizes)s, %(composition)s, %(image_url)s, %(image_urls)s,
        %(collage_url)s, %(availability)s, true, %(fetched_at)s, now())
ON CONFLICT (sku) DO UPDATE SET
    source = EXCLUDED.source, staging_id = EXCLUDED.staging_id, name = EXCLUDED.name,
    description = EXCLUDED.description, price = EXCLUDED.price, currency = EXCLUDED.currency,
    category = EXCLUDED.category, colour = EXCLUDED.colour, sizes = EXCLUDED.sizes,
    composition = EXCLUDED.composition, image_url = EXCLUDED.image_url, image_urls = EXCLUDED.image_urls,
    collage_url = EXCLUDED.collage_url, availability = EXCLUDED.availability, in_stock = true,
    availability_updated_at = EXCLUDED.availability_updated_at, synced_at = now()
WHERE products.brand = EXCLUDED.brand
RETURNING sku
"""

DESTOCK = """
UPDATE products SET in_stock = false, availability = '{}'::jsonb, synced_at = now()
WHERE in_stock AND brand = ANY(%s)
  AND (availability_updated_at IS NULL OR availability_updated_at < now() - make_interval(hours => %s))
"""

MARK_SYNCED = """
UPDATE raw_products
SET sync_status = 'synced', synced_at = now(), sync_error_message = NULL, sync_attempts = 0
WHERE id = %s
"""

MARK_ERROR = """
UPDATE raw_products SET sync_status = 'error', sync_error_message = %s,
    sync_attempts = LEAST(sync_attempts + 1, 32767)
WHERE id = %s
"""


@dataclass
class SyncSummary:
    status: str = "running"
    products: int = 0
    synced: int = 0
    errors: int = 0
    skipped: int = 0
    destocked: int = 0
    seconds: float = 0.0
    error_message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _params(row: dict[str, Any]) -> dict[str, Any]:
    urls = row["image_urls"] if isinstance(row["image_urls"], list) else []
    return {
        "sku": row["external_id"],
        "brand": row["brand"],
        "source": row["source"],
        "staging_id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": row["price"],
        "currency": row["currency"] or "KZT",
        "category": row["category"],
        "colour": row["colour"],
        "sizes": Jsonb(row["sizes"]) if row["sizes"] is not None else None,
        "composition": row["composition"],
        "image_url": urls[0] if urls else None,
        "image_urls": Jsonb(urls),
        "collage_url": row["collage_url"],
        "availability": Jsonb(row["availability"]),
        "fetched_at": row["fetched_at"],
    }


def _publish(prod: psycopg.Connection[DictRow], rows: list[dict[str, Any]]) -> dict[int, str | None]:
    """Upsert ``rows`` into production in one transaction; per staging id: None or an error."""
    outcome: dict[int, str | None] = {}
    with prod.transaction():
        for row in rows:
            if not row["name"]:
                outcome[row["id"]] = "no product name (production requires one)"
                continue
            if not row["collage_url"]:
                outcome[row["id"]] = "collage_ready without collage_url"
                continue
            done = prod.execute(UPSERT_PRODUCT, _params(row)).fetchone()
            if done is None:
                outcome[row["id"]] = (
                    f"sku {row['external_id']} already belongs to another brand in production"
                )
            else:
                outcome[row["id"]] = None
    return outcome


def run(rt: Runtime) -> SyncSummary:
    """One sync_to_production run."""
    s = rt.settings
    summary = SyncSummary()
    t0 = time.monotonic()
    seen: list[int] = []
    try:
        with rt.connect() as staging, rt.connect_production() as prod:
            while True:
                with staging.transaction():
                    rows = staging.execute(
                        CLAIM,
                        {
                            "fresh": s.availability_fresh_hours,
                            "seen": seen,
                            "max_attempts": s.max_sync_attempts,
                            "limit": s.sync_chunk_size,
                        },
                    ).fetchall()
                    if not rows:
                        break
                    outcome = _publish(prod, rows)  # committed in production before staging is marked
                    for row in rows:
                        seen.append(row["id"])
                        error = outcome[row["id"]]
                        if error is None:
                            staging.execute(MARK_SYNCED, (row["id"],))
                            summary.synced += 1
                            rt.metrics.synced.labels("synced").inc()
                        else:
                            staging.execute(MARK_ERROR, (error, row["id"]))
                            summary.errors += 1
                            rt.metrics.synced.labels("error").inc()
                            log.warning("sync failed", extra={"product_id": row["id"], "error": error})
                summary.products += len(rows)
            with staging.transaction():
                summary.skipped = staging.execute(MARK_SKIPPED, (s.availability_fresh_hours,)).rowcount
            rt.metrics.synced.labels("skipped").inc(summary.skipped)
            with prod.transaction():
                brands = list(s.availability_brands)
                summary.destocked = prod.execute(DESTOCK, (brands, s.availability_fresh_hours)).rowcount
            rt.metrics.synced.labels("destocked").inc(summary.destocked)
        summary.status = "success" if not summary.errors else "partial"
        if summary.errors:
            summary.error_message = f"{summary.errors} product(s) failed to sync"
    except (psycopg.Error, OSError) as exc:
        summary.status = "failed"
        summary.error_message = f"{exc.__class__.__name__}: {exc}"
        log.error("sync to production failed", extra={"error": summary.error_message})
    summary.seconds = time.monotonic() - t0
    rt.metrics.sync_success.set(0 if summary.status == "failed" else 1)
    log.info("sync to production finished", extra=summary.as_dict())
    return summary
