"""Catalog → Ximilar Collection (spec 02 §4, 17.1).

Products with photos in Object Storage (``image_status`` uploaded / collage_ready) and
``ximilar_status = 'pending'`` are claimed in chunks (``FOR UPDATE SKIP LOCKED``, one transaction
per chunk). Each product becomes one insert request with one record per image
(``_id = {external_id}_{n}``, ``_url`` = the public Object Storage URL) carrying the metadata of
spec 02 §4: sku_id, brand, name, category, price, store (stores with stock, from raw_availability +
raw_stores) and floor (the mall, the closest the staging schema has). Ximilar answers per record;
any record not accepted fails the product: ``error`` + ``ximilar_error_message``; ``ximilar_retry``
retries those up to ``max_ximilar_attempts``. Re-sending is harmless: record ids are stable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from unde_common.catalog import Outcome, WorkQueue, guarded, work_through
from unde_common.http import ProviderError
from ximilar_sync.runtime import Runtime

log = logging.getLogger(__name__)

CLAIM_PENDING = """
SELECT id, brand, external_id, name, category, price, currency, image_urls, collage_url
FROM raw_products
WHERE image_status IN ('uploaded', 'collage_ready') AND ximilar_status = 'pending'
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

CLAIM_RETRY = """
SELECT id, brand, external_id, name, category, price, currency, image_urls, collage_url
FROM raw_products
WHERE image_status IN ('uploaded', 'collage_ready') AND ximilar_status = 'error'
  AND ximilar_attempts < %s
  AND NOT (id = ANY(%s))  -- each product at most once per run
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

STORES = """
SELECT a.product_id,
       array_agg(DISTINCT COALESCE(s.name, a.store_id::text) ORDER BY COALESCE(s.name, a.store_id::text))
           AS stores,
       array_remove(array_agg(DISTINCT s.mall_name), NULL) AS malls
FROM raw_availability a
LEFT JOIN raw_stores s ON s.brand = a.brand AND s.store_id = a.store_id
WHERE a.brand = %s AND a.product_id = ANY(%s)
  AND a.fetched_at > now() - make_interval(hours => %s)
  AND jsonb_typeof(a.sizes_in_stock) = 'array' AND jsonb_array_length(a.sizes_in_stock) > 0
GROUP BY a.product_id
"""

MARK_SYNCED = """
UPDATE raw_products
SET ximilar_status = 'synced', ximilar_synced_at = now(), ximilar_error_message = NULL, ximilar_attempts = 0
WHERE id = %s
"""

MARK_ERROR = """
UPDATE raw_products
SET ximilar_status = 'error', ximilar_error_message = %s,
    ximilar_attempts = LEAST(ximilar_attempts + 1, 32767)
WHERE id = %s
"""

PENDING_COUNT = """
SELECT count(*) AS n FROM raw_products
WHERE image_status IN ('uploaded', 'collage_ready') AND ximilar_status = 'pending'
"""


class XimilarSyncError(Exception):
    """Ximilar did not take a product's records."""


@dataclass
class RunSummary:
    task: str
    products: int = 0
    synced: int = 0
    errors: int = 0
    records: int = 0
    pending_left: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def build_records(row: dict[str, Any], stores: Sequence[str], malls: Sequence[str]) -> list[dict[str, Any]]:
    """One Ximilar record per image of the product."""
    urls = row["image_urls"]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise XimilarSyncError("image_urls is empty or not a list of URLs")
    price = row["price"]
    meta: dict[str, Any] = {
        "sku_id": row["external_id"],
        "product_id": row["external_id"],
        "brand": row["brand"],
        "name": row["name"] or "",
        "category": row["category"] or "",
        "price": f"{price:.2f}" if price is not None else "",
        "currency": row["currency"] or "",
        "store": ", ".join(stores),
        "floor": ", ".join(malls),
    }
    if row.get("collage_url"):
        meta["collage_url"] = row["collage_url"]
    return [
        {"_id": f"{row['external_id']}_{n}", "_url": url, "image_index": n, **meta}
        for n, url in enumerate(urls, start=1)
    ]


def send(rt: Runtime, records: list[dict[str, Any]]) -> None:
    """POST the records; raise XimilarSyncError naming what Ximilar refused."""
    body = {"fields_to_return": ["_id"], "records": records}
    try:
        answer = rt.ximilar.post_json(rt.settings.ximilar_insert_path, json=body)
    except ProviderError as exc:
        raise XimilarSyncError(str(exc)) from exc
    if not isinstance(answer, dict):
        raise XimilarSyncError(f"ximilar: unexpected answer type {type(answer).__name__}")
    status = answer.get("status")
    if isinstance(status, dict) and status.get("code") not in (200, 201, None):
        raise XimilarSyncError(f"ximilar: status {status.get('code')} {status.get('text', '')}".strip())
    returned = answer.get("records")
    if not isinstance(returned, list) or len(returned) != len(records):
        got = len(returned) if isinstance(returned, list) else "no"
        raise XimilarSyncError(f"ximilar: answer has {got} records for {len(records)} sent")
    refused = []
    for sent, rec in zip(records, returned, strict=True):
        rec_status = rec.get("_status") if isinstance(rec, dict) else None
        code = rec_status.get("code") if isinstance(rec_status, dict) else None
        if code not in (200, 201):
            text = rec_status.get("text", "") if isinstance(rec_status, dict) else "missing _status"
            refused.append(f"{sent['_id']}: {code} {text}".strip())
    if refused:
        raise XimilarSyncError("ximilar refused record(s): " + "; ".join(refused))


QUEUE = WorkQueue(
    claim_new=CLAIM_PENDING,
    claim_retry=CLAIM_RETRY,
    mark_ok=MARK_SYNCED,
    mark_error=MARK_ERROR,
    waiting=PENDING_COUNT,
    ok_result="synced",
    failure_message="ximilar sync failed",
)


def _sync_one(rt: Runtime, row: DictRow, stores: dict[str, Any]) -> Outcome[int]:
    """Send one product; the outcome's value is the number of records Ximilar took."""
    try:
        found = stores.get(row["external_id"]) or {}
        records = build_records(row, found.get("stores") or [], found.get("malls") or [])
        send(rt, records)
    except XimilarSyncError as exc:
        return Outcome(row, error=str(exc))
    return Outcome(row, mark=(row["id"],), value=len(records))


def _stores(conn: Connection[DictRow], rows: Sequence[DictRow], window_hours: int) -> dict[str, Any]:
    """external_id → its stores with stock and their malls, for the products of ``rows``."""
    stores: dict[str, Any] = {}
    for brand in {r["brand"] for r in rows}:
        ids = [r["external_id"] for r in rows if r["brand"] == brand]
        for found in conn.execute(STORES, (brand, ids, window_hours)).fetchall():
            stores[found["product_id"]] = found
    return stores


def run(rt: Runtime, *, retry: bool = False) -> RunSummary:
    """One ximilar_sync (or ximilar_retry) run."""
    s = rt.settings
    summary = RunSummary("ximilar_retry" if retry else "ximilar_sync")

    def process(conn: Connection[DictRow], rows: list[DictRow]) -> list[Outcome[int]]:
        stores = _stores(conn, rows, s.store_window_hours)
        sync = guarded(lambda row: _sync_one(rt, row, stores), "ximilar")
        return list(pool.map(sync, rows))

    def synced(done: Outcome[int]) -> None:
        summary.records += done.value or 0

    with ThreadPoolExecutor(s.ximilar_concurrency, "ximilar") as pool:
        tally = work_through(
            rt.connect,
            QUEUE,
            process,
            rt.metrics.stage,
            retry=retry,
            max_attempts=s.max_ximilar_attempts,
            batch_size=s.batch_size,
            chunk_size=s.claim_chunk_size,
            on_ok=synced,
        )
    summary.products, summary.synced, summary.errors = tally.products, tally.ok, tally.errors
    summary.pending_left, summary.seconds = tally.waiting, tally.seconds
    log.info("ximilar sync run finished", extra=summary.as_dict())
    return summary
