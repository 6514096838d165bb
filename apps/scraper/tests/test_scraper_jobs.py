"""availability_poll, sync_to_production and cleanup_old_data against the project's staging and
production schemas (the ``scraper`` login of both) and a loopback Inditex mobile API injecting
5xx, 429 + Retry-After, 404, malformed JSON and wrong shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from scraper import availability, cleanup, sync
from scraper.runtime import Runtime
from scraper.settings import ScraperSettings
from unde_testkit.apptests import serving, truncated
from unde_testkit.catalog_testing import ZaraSimulator, login_dsn, migrated_database, zara_item
from unde_testkit.testing import PostgresHandle

STAGING, MAIN = "cat_scraper_staging", "cat_scraper_main"
STORES = [6643, 9204, 9073, 16546]


@pytest.fixture(scope="module")
def dbs(pg: PostgresHandle) -> dict[str, str]:
    staging_su = migrated_database(pg, STAGING, "unde_staging")
    main_su = migrated_database(pg, MAIN, "unde_main")
    groups = ["unde_staging_scraper", "unde_main_scraper"]
    return {
        "staging_su": staging_su,
        "main_su": main_su,
        "staging": login_dsn(pg, STAGING, "scraper", groups),
        "main": login_dsn(pg, MAIN, "scraper", groups),
    }


@pytest.fixture(scope="module")
def zara() -> Iterator[tuple[ZaraSimulator, str]]:
    yield from serving(ZaraSimulator())


@pytest.fixture
def sim(zara: tuple[ZaraSimulator, str]) -> ZaraSimulator:
    zara[0].reset()
    return zara[0]


@pytest.fixture
def staging(dbs: dict[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with truncated(
        dbs["staging_su"], "raw_products", "raw_availability", "raw_stores", "scraper_logs"
    ) as conn:
        yield conn


@pytest.fixture
def prod(dbs: dict[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with truncated(dbs["main_su"], "products") as conn:
        yield conn


@pytest.fixture
def rt(dbs: dict[str, str], zara: tuple[ZaraSimulator, str]) -> Runtime:
    values: dict[str, Any] = {
        "staging_db_url": dbs["staging"],
        "production_db_url": dbs["main"],
        "zara_api_base_url": zara[1],
        "http_read_timeout_s": 2,
        "http_backoff_base_s": 0.05,
        "poll_chunk_size": 3,
        "sync_chunk_size": 2,
    }
    return Runtime(ScraperSettings(**values))


def add_product(
    db: psycopg.Connection[Any],
    external_id: str,
    *,
    status: str = "collage_ready",
    brand: str = "zara",
    **extra: Any,
) -> int:
    cols = {
        "source": f"apify_{brand}",
        "external_id": external_id,
        "brand": brand,
        "name": f"Dress {external_id}",
        "price": 15990,
        "category": "DRESSES",
        "image_urls": Jsonb([f"https://o.test/originals/{brand}/{external_id}/{n}.jpg" for n in (1, 2)]),
        "collage_url": f"https://o.test/collages/{brand}/{external_id}.jpg",
        "image_status": status,
        "raw_data": Jsonb(zara_item(external_id, [f"https://static.zara.net/{external_id}.jpg?w={{width}}"])),
        **extra,
    }
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    row = db.execute(
        f"INSERT INTO raw_products ({names}, scraped_at) VALUES ({marks}, now()) RETURNING id",  # noqa: S608
        tuple(cols.values()),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def ref(external_id: str, colour: str = "800") -> str:
    """The 11-digit stock reference of a test product's colour (its Apify item's ``reference``
    digits, then the colour id)."""
    return str(zara_item(external_id, [])["reference"]).split("-")[0] + colour


def test_colour_references_come_from_the_item_not_the_product_id() -> None:
    item = {
        "id": 315220723,
        "reference": "05584361-V2024",
        "colorsSizesImagesJSON": [{"id": "800", "name": "Negro"}, {"id": "401", "name": "Marino"}],
    }
    assert availability.colour_references(item) == [
        availability.ColourRef("05584361800", "V2024", "Negro"),
        availability.ColourRef("05584361401", "V2024", "Marino"),
    ]
    # Zara's product JSON: each colour carries its own reference, campaign included
    zara_json = {
        "id": 315220723,
        "detail": {
            "reference": "05584361-V2024",
            "colors": [
                {"id": "800", "name": "Negro", "reference": "C05584361800000-V2024"},
                {"id": "401", "name": "Marino", "reference": "C05584361401000-I2024"},
            ],
        },
    }
    assert [(r.reference, r.campaign) for r in availability.colour_references(zara_json)] == [
        ("05584361800", "V2024"),
        ("05584361401", "I2024"),
    ]
    assert availability.colour_references({"id": 315220723, "colorsSizesImagesJSON": [{"id": "800"}]}) == []


def test_a_zara_product_from_a_realistic_apify_item_gets_stock_for_each_colour(
    staging: psycopg.Connection[Any], rt: Runtime, sim: ZaraSimulator
) -> None:
    item = zara_item(
        "315220723", ["https://static.zara.net/p.jpg?w={width}"], (("800", "Negro"), ("401", "Marino"))
    )
    item["reference"] = "05584361-V2024"
    add_product(staging, "315220723", raw_data=Jsonb(item))
    sim.stock["05584361800"] = {6643: {"S": 1}}
    sim.stock["05584361401"] = {9204: {"M": 2}, 6643: {"L": 3}}
    sim.campaigns.update({"05584361800": "V2024", "05584361401": "V2024"})

    summary = availability.poll(rt)

    assert (summary.status, summary.products, summary.in_stock, summary.errors) == ("success", 1, 1, 0)
    stores = ",".join(map(str, STORES))
    assert sim.requests == [("V2024", "05584361800", stores), ("V2024", "05584361401", stores)]
    rows = {
        r["store_id"]: r["sizes_in_stock"]
        for r in staging.execute("SELECT store_id, sizes_in_stock FROM raw_availability").fetchall()
    }
    assert rows == {
        6643: [
            {"size_id": 1, "size": "S", "quantity": 1, "colour": "Negro", "reference": "05584361800"},
            {"size_id": 1, "size": "L", "quantity": 3, "colour": "Marino", "reference": "05584361401"},
        ],
        9204: [{"size_id": 1, "size": "M", "quantity": 2, "colour": "Marino", "reference": "05584361401"}],
        9073: [],
        16546: [],
    }


def test_the_product_id_or_a_wrong_campaign_is_not_a_part_number(
    staging: psycopg.Connection[Any], rt: Runtime, sim: ZaraSimulator
) -> None:
    add_product(staging, "315220723", raw_data=Jsonb({"id": 315220723, "partNumber": "315220723"}))
    item = zara_item("315220724", [], (("800", "Negro"),))
    add_product(staging, "315220724", raw_data=Jsonb(item))
    sim.stock_item(item, {"800": {6643: {"S": 1}}})
    sim.campaigns[ref("315220724")] = "I2025"  # the store sells it under another campaign

    summary = availability.poll(rt)

    assert (summary.products, summary.errors) == (2, 2)
    errors = " ".join(summary.sample_errors)
    assert "315220723: no colour reference" in errors and "HTTP 404" in errors
    assert [pn for _, pn, _ in sim.requests] == [ref("315220724")]  # the 9-digit id is never sent


def test_poll_writes_one_row_per_store_and_survives_faults(
    staging: psycopg.Connection[Any], rt: Runtime, sim: ZaraSimulator
) -> None:
    add_product(staging, "A1")
    add_product(staging, "A2", status="uploaded")
    add_product(staging, "A3")
    for ext, fault in {
        "E500": "500",
        "E404": "404",
        "EMAL": "malformed",
        "EBAD": "badshape",
        "R429": "429",
    }.items():
        add_product(staging, ext)
        sim.faults[ref(ext)] = fault
    add_product(staging, "BROKEN", status="error")  # photos failed: not polled
    add_product(staging, "B1", brand="bershka")  # no mobile API source for this brand
    for ext in ("A1", "A2", "A3", "E500", "E404", "EMAL", "EBAD", "R429", "BROKEN"):
        sim.stock_item(zara_item(ext, []), {})  # every colour known, none in stock
    sim.stock[ref("A1")] = {6643: {"S": 2, "M": 0}, 9204: {"L": 1}}
    sim.stock[ref("A2")] = {16546: {"XS": 3}}
    sim.stock[ref("R429")] = {9073: {"M": 1}}

    summary = availability.poll(rt)

    assert (summary.products, summary.errors, summary.in_stock) == (8, 4, 3)
    assert summary.status == "failed"  # 50 % of the products failed > POLL_MAX_ERROR_RATIO
    assert rt.metrics.app.registry.get_sample_value("availability_poll_success") == 0
    rows = staging.execute(
        "SELECT product_id, store_id, sizes_in_stock FROM raw_availability ORDER BY product_id, store_id"
    ).fetchall()
    a1 = {r["store_id"]: r["sizes_in_stock"] for r in rows if r["product_id"] == "A1"}
    colour = {"colour": "BLACK", "reference": ref("A1")}
    assert a1 == {
        6643: [{"size_id": 1, "size": "S", "quantity": 2, **colour}],
        9073: [],
        9204: [{"size_id": 1, "size": "L", "quantity": 1, **colour}],
        16546: [],
    }
    assert {r["product_id"] for r in rows} == {"A1", "A2", "A3", "R429"}
    asked = {p for _, p, _ in sim.requests}
    assert asked >= {ref("A1"), ref("A1", "401"), ref("R429")} and ref("BROKEN") not in asked
    assert all(stores == "6643,9204,9073,16546" for _, _, stores in sim.requests)
    log = staging.execute("SELECT * FROM scraper_logs WHERE scraper_name = 'availability_poll'").fetchone()
    assert log is not None and log["status"] == "failed" and log["records_errors"] == 4
    assert "HTTP 500" in " ".join(log["metadata"]["sample_errors"])

    # the provider recovers: the next poll succeeds and upserts (one row per product, store and day)
    sim.faults.clear()
    again = availability.poll(rt)
    assert again.status == "success" and again.errors == 0
    assert rt.metrics.app.registry.get_sample_value("availability_poll_success") == 1
    count = staging.execute("SELECT count(*) AS n FROM raw_availability").fetchone()
    assert count == {"n": 8 * 4}


def _stock(
    db: psycopg.Connection[Any], ext: str, store: int, sizes: list[str], age: str = "0 minutes"
) -> None:
    db.execute(
        "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at) "
        "VALUES ('zara', %s, %s, %s, now() - %s::interval)",
        (store, ext, Jsonb([{"size": s, "quantity": 1} for s in sizes]), age),
    )


def test_sync_publishes_collage_ready_products_in_stock(
    staging: psycopg.Connection[Any], prod: psycopg.Connection[Any], rt: Runtime
) -> None:
    for ext in ("S1", "S2", "S3"):
        add_product(staging, ext)
    add_product(staging, "NOCOLLAGE", status="uploaded")
    add_product(staging, "STALE")
    add_product(staging, "NOSTOCK")
    add_product(staging, "NONAME", name=None)
    _stock(staging, "S1", 6643, ["S", "M"])
    _stock(staging, "S1", 9204, ["L"])
    _stock(staging, "S2", 9073, ["XS"])
    _stock(staging, "S3", 16546, ["M"], "90 minutes")
    _stock(staging, "NOCOLLAGE", 6643, ["S"])
    _stock(staging, "STALE", 6643, ["S"], "3 hours")
    _stock(staging, "NOSTOCK", 6643, [])
    _stock(staging, "NONAME", 6643, ["S"])

    summary = sync.run(rt)

    assert (summary.status, summary.synced, summary.errors) == ("partial", 3, 1)
    assert summary.skipped == 2  # STALE, NOSTOCK
    products = {r["sku"]: r for r in prod.execute("SELECT * FROM products").fetchall()}
    assert sorted(products) == ["S1", "S2", "S3"]
    s1 = products["S1"]
    assert s1["in_stock"] and s1["brand"] == "zara" and s1["name"] == "Dress S1"
    assert s1["image_url"] == "https://o.test/originals/zara/S1/1.jpg"
    assert s1["collage_url"] == "https://o.test/collages/zara/S1.jpg"
    assert set(s1["availability"]) == {"6643", "9204"}
    assert s1["availability"]["6643"]["sizes"] == [{"size": "S", "quantity": 1}, {"size": "M", "quantity": 1}]
    statuses = {
        r["external_id"]: (r["sync_status"], r["sync_error_message"])
        for r in staging.execute(
            "SELECT external_id, sync_status, sync_error_message FROM raw_products"
        ).fetchall()
    }
    assert statuses["S1"] == ("synced", None)
    assert statuses["NOCOLLAGE"] == ("pending", None)
    assert statuses["STALE"] == ("skipped", None) and statuses["NOSTOCK"] == ("skipped", None)
    assert statuses["NONAME"][0] == "error" and "no product name" in statuses["NONAME"][1]
    assert rt.metrics.app.registry.get_sample_value("sync_job_success") == 1

    # nothing new: re-running writes nothing
    assert sync.run(rt).synced == 0
    # a fresh poll of S2 re-syncs it; S1's stock went stale (older than 2 h): de-stocked in production
    staging.execute(
        "UPDATE raw_availability SET fetched_at = now() - interval '3 hours' WHERE product_id = 'S1'"
    )
    prod.execute("UPDATE products SET availability_updated_at = now() - interval '3 hours' WHERE sku = 'S1'")
    staging.execute("UPDATE raw_availability SET fetched_at = now() WHERE product_id = 'S2'")
    again = sync.run(rt)
    assert again.synced == 1 and again.destocked == 1
    s1_after = prod.execute("SELECT in_stock, availability FROM products WHERE sku = 'S1'").fetchone()
    assert s1_after == {"in_stock": False, "availability": {}}


def test_a_sku_of_another_brand_is_never_overwritten(
    staging: psycopg.Connection[Any], prod: psycopg.Connection[Any], rt: Runtime
) -> None:
    prod.execute("INSERT INTO products (sku, brand, name) VALUES ('DUP1', 'bershka', 'Other brand')")
    add_product(staging, "DUP1")
    _stock(staging, "DUP1", 6643, ["S"])
    summary = sync.run(rt)
    assert summary.errors == 1
    row = staging.execute("SELECT sync_status, sync_error_message FROM raw_products").fetchone()
    assert row is not None and row["sync_status"] == "error"
    assert "already belongs to another brand" in row["sync_error_message"]
    assert prod.execute("SELECT brand, name FROM products").fetchone() == {
        "brand": "bershka",
        "name": "Other brand",
    }


def test_sync_failure_reports_zero(dbs: dict[str, str], zara: tuple[ZaraSimulator, str]) -> None:
    values: dict[str, Any] = {
        "staging_db_url": dbs["staging"],
        "production_db_url": dbs["main"].replace("cat_scraper_main", "no_such_db"),
        "zara_api_base_url": zara[1],
    }
    rt = Runtime(ScraperSettings(**values))
    summary = sync.run(rt)
    assert summary.status == "failed" and "no_such_db" in (summary.error_message or "")
    assert rt.metrics.app.registry.get_sample_value("sync_job_success") == 0


def test_cleanup_deletes_rows_older_than_30_days(staging: psycopg.Connection[Any], rt: Runtime) -> None:
    old = add_product(staging, "OLD")
    add_product(staging, "NEW")
    staging.execute("UPDATE raw_products SET scraped_at = now() - interval '31 days' WHERE id = %s", (old,))
    _stock(staging, "NEW", 6643, ["S"], "31 days")
    _stock(staging, "NEW", 9204, ["S"], "29 days")
    staging.execute(
        "INSERT INTO scraper_logs (scraper_name, status, started_at) VALUES "
        "('apify_zara', 'success', now() - interval '40 days'), ('apify_zara', 'success', now())"
    )
    values: dict[str, Any] = {**rt.settings.model_dump(), "cleanup_chunk_size": 1}
    small = Runtime(ScraperSettings(**values))

    result = cleanup.run(small)

    assert result["deleted"] == {"raw_availability": 1, "scraper_logs": 1, "raw_products": 1}
    left = staging.execute("SELECT external_id FROM raw_products").fetchall()
    assert left == [{"external_id": "NEW"}]
    assert cleanup.run(small)["deleted"] == {"raw_availability": 0, "scraper_logs": 0, "raw_products": 0}
