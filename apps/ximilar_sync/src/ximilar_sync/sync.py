"""Catalog → Ximilar Collection (spec 02 §4, 17.1).

Products with photos in Object Storage (``image_status`` uploaded / collage_ready) and
``ximilar_status = 'pending'`` are claimed in chunks (``FOR UPDATE SKIP LOCKED``, one transaction
per chunk). Each product becomes one record per image (``_id = {external_id}_{n}``, ``_url`` = the
public Object Storage URL) carrying the metadata of spec 02 §4: sku_id, brand, name, category,
price, store (stores with stock, from raw_availability + raw_stores) and floor (the mall, the
closest the staging schema has). The records go to ``{XIMILAR_SERVICE_PATH}/insert`` in requests of
at most ``ximilar_batch_records`` (Fashion Search takes 10 a request,
https://docs.ximilar.com/services/fashion_search "Things to note"; body as
https://docs.ximilar.com/generated-snippets/insert/request-body). Ximilar answers per record; any
record not accepted fails the product: ``error`` + ``ximilar_error_message``; ``ximilar_retry``
retries those up to ``max_ximilar_attempts``. Re-sending is harmless: record ids are stable and an
insert of an ``_id`` again replaces that record, so the insert is retried like an idempotent call.

Stale records: the weekly run then lists the collection (``allRecords``, paged) and deletes
(``delete``, same batch size) the records of products no longer in the staging catalog (the
scraper's cleanup deletes a product no Apify run has seen for ``CLEANUP_RETENTION_DAYS``) and of
images a product no longer has (``image_index`` above its photo count). Only records carrying our
metadata (``sku_id``, ``brand``, ``image_index``) are judged; an empty staging catalog deletes nothing. Both
calls are in the official client (ximilar-client ``ximilar/client/search.py``: ``allRecords`` with
``fields_to_return``, ``delete`` with ``records: [{"_id"}]``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
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

CATALOG_SIZE = "SELECT count(*) AS n FROM raw_products"

#: the photo count of each of these products (NULL while its photos are not in Object Storage)
PHOTO_COUNTS = """
SELECT brand, external_id,
       CASE WHEN jsonb_typeof(image_urls) = 'array' THEN jsonb_array_length(image_urls) END AS photos
FROM raw_products
WHERE external_id = ANY(%s)
"""

#: what the stale check reads of every collection record (metadata written by build_records)
LISTED_FIELDS = ["_id", "sku_id", "brand", "image_index"]

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
    #: collection records deleted as stale (weekly run) and why the check did not finish, if it did not
    stale_deleted: int = 0
    stale_error: str | None = None
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


def batches(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def answer_records(answer: Any, sent: int) -> list[Any]:
    """The per-record answers of an insert/delete; XimilarSyncError when the answer is not one."""
    if not isinstance(answer, dict):
        raise XimilarSyncError(f"ximilar: unexpected answer type {type(answer).__name__}")
    status = answer.get("status")
    if isinstance(status, dict) and status.get("code") not in (200, 201, None):
        raise XimilarSyncError(f"ximilar: status {status.get('code')} {status.get('text', '')}".strip())
    returned = answer.get("records")
    if not isinstance(returned, list) or len(returned) != sent:
        got = len(returned) if isinstance(returned, list) else "no"
        raise XimilarSyncError(f"ximilar: answer has {got} records for {sent} sent")
    return returned


def record_code(record: Any) -> tuple[int | None, str]:
    """(code, text) of one answered record's ``_status``."""
    status = record.get("_status") if isinstance(record, dict) else None
    if not isinstance(status, dict):
        return None, "missing _status"
    return status.get("code"), str(status.get("text", ""))


def send(rt: Runtime, records: list[dict[str, Any]]) -> None:
    """Insert the records, ``ximilar_batch_records`` a request; raise XimilarSyncError naming what
    Ximilar refused (or the request that failed: the rest of the product is not sent)."""
    s = rt.settings
    path = f"{s.ximilar_service_path}/insert"
    refused = []
    for chunk in batches(records, s.ximilar_batch_records):
        body = {"fields_to_return": ["_id"], "records": chunk}
        try:
            # stable _ids: a repeat after a lost answer replaces the same records (module docstring)
            answer = rt.ximilar.post_json(path, json=body, idempotent=True)
        except ProviderError as exc:
            raise XimilarSyncError(str(exc)) from exc
        for sent, rec in zip(chunk, answer_records(answer, len(chunk)), strict=True):
            code, text = record_code(rec)
            if code not in (200, 201):
                refused.append(f"{sent['_id']}: {code} {text}".strip())
    if refused:
        raise XimilarSyncError("ximilar refused record(s): " + "; ".join(refused))


def list_records(rt: Runtime) -> Iterator[dict[str, Any]]:
    """Every record of the collection (:data:`LISTED_FIELDS`), ``allRecords`` page by page until a
    short page."""
    s = rt.settings
    path = f"{s.ximilar_service_path}/allRecords"
    page = 1
    while True:
        try:
            answer = rt.ximilar.post_json(
                path,
                params={"size": s.ximilar_page_size, "page": page},
                json={"fields_to_return": LISTED_FIELDS},
                idempotent=True,  # a read
            )
        except ProviderError as exc:
            raise XimilarSyncError(str(exc)) from exc
        found = answer.get("answer_records") if isinstance(answer, dict) else None
        if not isinstance(found, list):
            raise XimilarSyncError("ximilar: allRecords answer has no answer_records")
        yield from (r for r in found if isinstance(r, dict))
        if len(found) < s.ximilar_page_size:
            return
        page += 1


def delete_records(rt: Runtime, ids: Sequence[str]) -> int:
    """Delete the records ``ids``, ``ximilar_batch_records`` a request; returns how many are gone
    (deleted now, or already absent: 404)."""
    s = rt.settings
    path = f"{s.ximilar_service_path}/delete"
    gone = 0
    for chunk in batches(ids, s.ximilar_batch_records):
        try:
            # deleting a record twice leaves the same collection: retried like an idempotent call
            answer = rt.ximilar.post_json(
                path, json={"records": [{"_id": i} for i in chunk]}, idempotent=True
            )
        except ProviderError as exc:
            raise XimilarSyncError(str(exc)) from exc
        for rec in answer_records(answer, len(chunk)):
            code, text = record_code(rec)
            if code in (200, 204, 404):
                gone += 1
            else:
                log.warning(
                    "ximilar did not delete a record", extra={"record": rec, "code": code, "text": text}
                )
    return gone


def stale_ids(conn: Connection[DictRow], listed: Sequence[dict[str, Any]]) -> list[str]:
    """The listed records whose product is gone from the staging catalog, or whose image_index is
    above the product's photo count; records without our metadata are left alone."""
    ours = [
        r
        for r in listed
        if isinstance(r.get("_id"), str)
        and r.get("sku_id")
        and r.get("brand")
        and isinstance(r.get("image_index"), int)
    ]
    photos: dict[tuple[str, str], int | None] = {}
    skus = sorted({str(r["sku_id"]) for r in ours})
    for chunk in batches(skus, 5000):
        for row in conn.execute(PHOTO_COUNTS, (chunk,)).fetchall():
            photos[(row["brand"], row["external_id"])] = row["photos"]
    stale = []
    for r in ours:
        key = (str(r["brand"]), str(r["sku_id"]))
        if key not in photos:
            stale.append(r["_id"])
            continue
        count = photos[key]
        if count and r["image_index"] > count:
            stale.append(r["_id"])
    return stale


def prune_stale(rt: Runtime) -> int:
    """Delete the collection's stale records (module docstring); returns how many went."""
    with rt.connect() as conn:
        catalog = conn.execute(CATALOG_SIZE).fetchone()
        if not catalog or not catalog["n"]:
            log.warning("staging catalog is empty: no Ximilar record is judged stale")
            return 0
        ids = stale_ids(conn, list(list_records(rt)))
    return delete_records(rt, ids) if ids else 0


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
    if not retry:
        try:
            summary.stale_deleted = prune_stale(rt)
        except XimilarSyncError as exc:
            summary.stale_error = str(exc)[:500]
            log.error("stale Ximilar records not deleted", extra={"error": summary.stale_error})
    log.info("ximilar sync run finished", extra=summary.as_dict())
    return summary
