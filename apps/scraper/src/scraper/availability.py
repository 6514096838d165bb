"""Hourly availability poll (spec 02 §1, 17.2): Inditex mobile API stock of every product in the
Kazakhstan stores → ``raw_availability``.

For each polled brand, every product seen in the last ``CLEANUP_RETENTION_DAYS`` whose photos did
not fail is asked for once per colour, for all stores together::

    GET {ZARA_API_BASE_URL}/LOMOServiciosRESTCommerce-ws/common/1/stock/campaign/{campaign}
        /product/part-number/{reference}?physicalStoreId=6643,9204,9073,16546&ajaxCall=true
    → {"stocks": [{"physicalStoreId": 6643, "sizeStocks": [{"sizeId": 3, "size": "M", "quantity": 2}]}]}

The endpoint is keyed by the colour's 11-digit reference (section, model, quality and colour:
``05584361800``), not by the 9-digit product id, and the campaign is the one of that reference
(``-V2024``), not the calendar's. Both come from the product's ``raw_data`` as Apify delivered it
(:func:`colour_references`): a colour's own ``reference`` (``C05584361800000-V2024`` in Zara's
product JSON), else the product ``reference`` (``05584361-V2024``) followed by the colour id
(``800``). Public store-stock scrapers build the same request (part number and campaign from the
product's ``-``-suffixed reference).

Each (product, store) gets one row per UTC day, upserted with the sizes in stock over all colours
(``[]`` = none; each size names its ``colour`` and ``reference``); ``fetched_at`` is the poll time. A
product without a usable reference, or one of whose colour requests fails (after retries) or answers
malformed, is counted as an error and keeps its previous rows; ``availability_poll_success`` is 0
when more than ``POLL_MAX_ERROR_RATIO`` of the products failed or the poll could not run.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from scraper.runtime import Runtime
from unde_common.http import ProviderError

log = logging.getLogger(__name__)

PRODUCTS = """
SELECT external_id,
       jsonb_build_object('reference', raw_data->'reference', 'colorsSizesImagesJSON',
                          raw_data->'colorsSizesImagesJSON', 'detail', raw_data->'detail') AS raw
FROM raw_products
WHERE brand = %s AND image_status <> 'error' AND scraped_at > now() - make_interval(days => %s)
ORDER BY id
"""

UPSERT = """
INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (brand, store_id, product_id, fetched_on)
DO UPDATE SET sizes_in_stock = EXCLUDED.sizes_in_stock, fetched_at = EXCLUDED.fetched_at
"""


class StockError(Exception):
    """The stock of one product could not be read."""


@dataclass
class PollSummary:
    status: str = "running"
    products: int = 0
    in_stock: int = 0
    errors: int = 0
    rows: int = 0
    seconds: float = 0.0
    error_message: str | None = None
    sample_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


_PRODUCT_REFERENCE = re.compile(r"^(\d{8})-([A-Z]\d{4})$")
_COLOUR_REFERENCE = re.compile(r"^C?(\d{11})\d*-([A-Z]\d{4})$")


@dataclass(frozen=True)
class ColourRef:
    """One colour's stock key: the 11-digit reference, its campaign and the colour's name."""

    reference: str
    campaign: str
    colour: str | None


def colour_references(raw: Any) -> list[ColourRef]:
    """The stock keys of a product's colours from its Apify item (``colorsSizesImagesJSON``, or
    ``detail.colors`` in Zara's product JSON); [] when none can be derived."""
    if not isinstance(raw, dict):
        return []
    colours = raw.get("colorsSizesImagesJSON")
    detail: dict[str, Any] = raw["detail"] if isinstance(raw.get("detail"), dict) else {}
    if not isinstance(colours, list):
        colours = detail.get("colors")
    if not isinstance(colours, list):
        return []
    product = _PRODUCT_REFERENCE.match(str(raw.get("reference") or detail.get("reference") or ""))
    refs: list[ColourRef] = []
    for colour in colours:
        if not isinstance(colour, dict):
            continue
        name = colour.get("name") if isinstance(colour.get("name"), str) else None
        own = _COLOUR_REFERENCE.match(str(colour.get("reference") or ""))
        colour_id = str(colour.get("id") or "")
        if own is not None:
            ref = ColourRef(own.group(1), own.group(2), name)
        elif product is not None and colour_id.isdigit() and len(colour_id) <= 3:
            ref = ColourRef(product.group(1) + colour_id.zfill(3), product.group(2), name)
        else:
            continue
        if all(r.reference != ref.reference for r in refs):
            refs.append(ref)
    return refs


def parse_stock(answer: Any, stores: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Sizes with stock per configured store (stores absent from the answer: none)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("stocks"), list):
        raise StockError("malformed stock answer: no 'stocks' list")
    result: dict[int, list[dict[str, Any]]] = {store: [] for store in stores}
    for entry in answer["stocks"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("sizeStocks"), list):
            raise StockError("malformed stock answer: an entry without 'sizeStocks'")
        try:
            store = int(entry["physicalStoreId"])
        except (KeyError, TypeError, ValueError):
            raise StockError("malformed stock answer: bad 'physicalStoreId'") from None
        if store not in result:
            continue
        for size in entry["sizeStocks"]:
            if not isinstance(size, dict):
                raise StockError("malformed stock answer: a size that is not an object")
            try:
                quantity = int(size.get("quantity", 0))
            except (TypeError, ValueError):
                raise StockError("malformed stock answer: bad 'quantity'") from None
            if quantity > 0:
                result[store].append(
                    {
                        "size_id": size.get("sizeId"),
                        "size": size.get("size") or size.get("name"),
                        "quantity": quantity,
                    }
                )
    return result


def fetch_stock(rt: Runtime, ref: ColourRef) -> dict[int, list[dict[str, Any]]]:
    """Sizes in stock of one colour per configured store."""
    s = rt.settings
    path = s.zara_stock_path.format(campaign=ref.campaign, reference=ref.reference)
    params = {"physicalStoreId": ",".join(str(x) for x in s.kz_zara_stores), "ajaxCall": "true"}
    try:
        answer = rt.zara.get_json(path, params=params)
    except ProviderError as exc:
        raise StockError(f"{ref.reference}-{ref.campaign}: {exc}") from exc
    return parse_stock(answer, list(s.kz_zara_stores))


def product_stock(rt: Runtime, raw: Any) -> dict[int, list[dict[str, Any]]]:
    """Sizes in stock of every colour of a product per configured store, each size tagged with its
    colour and reference."""
    refs = colour_references(raw)
    if not refs:
        raise StockError("no colour reference in raw_data (reference / colorsSizesImagesJSON)")
    result: dict[int, list[dict[str, Any]]] = {store: [] for store in rt.settings.kz_zara_stores}
    for ref in refs:
        for store, sizes in fetch_stock(rt, ref).items():
            result[store].extend({**size, "colour": ref.colour, "reference": ref.reference} for size in sizes)
    return result


def _one(rt: Runtime, product: dict[str, Any]) -> tuple[dict[int, list[dict[str, Any]]] | None, str | None]:
    try:
        return product_stock(rt, product["raw"]), None
    except StockError as exc:
        return None, f"{product['external_id']}: {exc}"
    except Exception as exc:  # a bug must not stop the whole poll
        log.exception("unexpected stock failure", extra={"product": product["external_id"]})
        return None, f"{product['external_id']}: unexpected {exc.__class__.__name__}: {exc}"


def poll(rt: Runtime) -> PollSummary:
    """One availability poll over every brand in AVAILABILITY_BRANDS."""
    s = rt.settings
    summary = PollSummary()
    t0 = time.monotonic()
    try:
        with rt.connect() as conn, ThreadPoolExecutor(s.poll_concurrency, "stock") as pool:
            log_row = conn.execute(
                "INSERT INTO scraper_logs (scraper_name, status, started_at, metadata) "
                "VALUES ('availability_poll', 'running', now(), %s) RETURNING id",
                (Jsonb({"stores": list(s.kz_zara_stores)}),),
            ).fetchone()
            assert log_row is not None
            for brand in s.availability_brands:
                products = conn.execute(PRODUCTS, (brand, s.cleanup_retention_days)).fetchall()
                for start in range(0, len(products), s.poll_chunk_size):
                    chunk = products[start : start + s.poll_chunk_size]
                    results = list(pool.map(_one, [rt] * len(chunk), chunk))
                    with conn.transaction(), conn.cursor() as cur:
                        rows: list[tuple[str, int, str, Jsonb]] = []
                        for product, (stock, error) in zip(chunk, results, strict=True):
                            summary.products += 1
                            if stock is None:
                                summary.errors += 1
                                rt.metrics.poll_products.labels(brand, "error").inc()
                                if len(summary.sample_errors) < 20 and error:
                                    summary.sample_errors.append(error)
                                continue
                            available = any(stock.values())
                            summary.in_stock += int(available)
                            rt.metrics.poll_products.labels(brand, "in_stock" if available else "none").inc()
                            rows.extend(
                                (brand, store, product["external_id"], Jsonb(sizes))
                                for store, sizes in stock.items()
                            )
                        if rows:
                            cur.executemany(UPSERT, rows)
                            summary.rows += len(rows)
            ratio = summary.errors / summary.products if summary.products else 0.0
            ok = ratio <= s.poll_max_error_ratio
            summary.status = "success" if ok and not summary.errors else ("partial" if ok else "failed")
            if summary.errors:
                summary.error_message = (
                    f"{summary.errors} product(s) failed; first: {summary.sample_errors[0]}"
                )
            conn.execute(
                """
                UPDATE scraper_logs SET status = %s, completed_at = now(),
                    duration_seconds = GREATEST(0, round(extract(epoch FROM now() - started_at)))::int,
                    records_fetched = %s, records_updated = %s, records_errors = %s, error_message = %s,
                    metadata = metadata || %s
                WHERE id = %s
                """,
                (
                    summary.status,
                    summary.products,
                    summary.rows,
                    summary.errors,
                    summary.error_message,
                    Jsonb({"in_stock": summary.in_stock, "sample_errors": summary.sample_errors}),
                    log_row["id"],
                ),
            )
    except (psycopg.Error, OSError) as exc:
        summary.status = "failed"
        summary.error_message = f"{exc.__class__.__name__}: {exc}"
        log.error("availability poll failed", extra={"error": summary.error_message})
    summary.seconds = time.monotonic() - t0
    rt.metrics.poll_success.set(0 if summary.status == "failed" else 1)
    log.info("availability poll finished", extra=summary.as_dict())
    return summary
