"""ximilar_sync / ximilar_retry against the project's staging schema (``ximilar`` login) and a
loopback Ximilar collection API: records and metadata of spec 02 §4, auth headers, per-record
refusals, 5xx, 429 + Retry-After, malformed JSON, timeouts, retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from unde_testkit.apptests import fetch_product, serving, staging_database, truncated
from unde_testkit.catalog_testing import XimilarSimulator
from unde_testkit.testing import PostgresHandle
from ximilar_sync import sync
from ximilar_sync.runtime import Runtime
from ximilar_sync.settings import XimilarSyncSettings

DB = "cat_ximilar_sync"


@pytest.fixture(scope="module")
def staging(pg: PostgresHandle) -> tuple[str, str]:
    return staging_database(pg, DB, "ximilar", "unde_staging_ximilar")


@pytest.fixture(scope="module")
def ximilar() -> Iterator[tuple[XimilarSimulator, str]]:
    yield from serving(XimilarSimulator())


@pytest.fixture
def db(staging: tuple[str, str], ximilar: tuple[XimilarSimulator, str]) -> Iterator[psycopg.Connection[Any]]:
    ximilar[0].records.clear()
    ximilar[0].clear()  # faults, counters, the request log
    with truncated(staging[0], "raw_products", "raw_availability", "raw_stores") as conn:
        yield conn


def make_runtime(staging: tuple[str, str], base: str, **overrides: Any) -> Runtime:
    values: dict[str, Any] = {
        "staging_db_url": staging[1],
        "ximilar_base_url": base,
        "ximilar_api_token": "ximilar-test-token",
        "ximilar_collection_id": "coll-test",
        "http_read_timeout_s": 1.0,
        "http_max_attempts": 3,
        "http_backoff_base_s": 0.05,
        "claim_chunk_size": 4,
    }
    values.update(overrides)
    return Runtime(XimilarSyncSettings(**values))


@pytest.fixture
def rt(staging: tuple[str, str], ximilar: tuple[XimilarSimulator, str]) -> Runtime:
    return make_runtime(staging, ximilar[1])


def add(
    db: psycopg.Connection[Any], external_id: str, n_images: int = 3, status: str = "collage_ready"
) -> int:
    urls = [
        f"https://objects.test/unde-images/originals/zara/{external_id}/{n}.jpg"
        for n in range(1, n_images + 1)
    ]
    row = db.execute(
        "INSERT INTO raw_products (source, external_id, brand, name, category, price, image_urls, "
        "collage_url, image_status, scraped_at) VALUES ('apify_zara', %s, 'zara', 'Linen shirt', 'SHIRTS', "
        "15990, %s, %s, %s, now()) RETURNING id",
        (
            external_id,
            Jsonb(urls),
            f"https://objects.test/unde-images/collages/zara/{external_id}.jpg",
            status,
        ),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def test_every_image_goes_to_the_collection_with_metadata(
    db: psycopg.Connection[Any], rt: Runtime, ximilar: tuple[XimilarSimulator, str]
) -> None:
    sim = ximilar[0]
    add(db, "X1", 3)
    add(db, "X2", 2, status="uploaded")
    add(db, "NOTYET", 2, status="pending")  # no photos in Object Storage yet: not sent
    db.execute(
        "INSERT INTO raw_stores (brand, store_id, name, mall_name) "
        "VALUES ('zara', 6643, 'Zara Dostyk Plaza', 'Dostyk Plaza')"
    )
    db.execute(
        "INSERT INTO raw_availability (brand, store_id, product_id, sizes_in_stock, fetched_at) VALUES "
        "('zara', 6643, 'X1', '[{\"size\": \"M\", \"quantity\": 2}]', now()), "
        "('zara', 9204, 'X1', '[{\"size\": \"S\", \"quantity\": 1}]', now()), "
        "('zara', 9073, 'X1', '[]', now())"
    )

    summary = sync.run(rt)

    assert (summary.products, summary.synced, summary.errors, summary.records) == (2, 2, 0, 5)
    assert sorted(sim.records) == ["X1_1", "X1_2", "X1_3", "X2_1", "X2_2"]
    rec = sim.records["X1_2"]
    assert rec["_url"] == "https://objects.test/unde-images/originals/zara/X1/2.jpg"
    assert {k: rec[k] for k in ("sku_id", "brand", "name", "category", "price", "image_index")} == {
        "sku_id": "X1",
        "brand": "zara",
        "name": "Linen shirt",
        "category": "SHIRTS",
        "price": "15990.00",
        "image_index": 2,
    }
    assert rec["store"] == "9204, Zara Dostyk Plaza"  # in stock there; 9073 has no sizes
    assert rec["floor"] == "Dostyk Plaza"
    x1 = fetch_product(db, "X1")
    assert x1["ximilar_status"] == "synced" and x1["ximilar_synced_at"] is not None
    assert fetch_product(db, "NOTYET")["ximilar_status"] == "pending"
    assert rt.metrics.app.registry.get_sample_value("ximilar_sync_pending_count") == 0
    assert rt.metrics.app.registry.get_sample_value("ximilar_sync_errors") == 0
    assert sync.run(rt).products == 0  # re-running sends nothing twice


def test_provider_faults_end_as_error_with_messages(
    db: psycopg.Connection[Any], rt: Runtime, ximilar: tuple[XimilarSimulator, str]
) -> None:
    sim = ximilar[0]
    for sku, fault in {"E500": "500", "EMAL": "malformed", "EREF": "refuse", "ESLOW": "slow"}.items():
        add(db, sku, 2)
        sim.record_faults[sku] = fault
    add(db, "E429", 2)
    sim.record_faults["E429"] = "429"
    add(db, "OK", 1)
    db.execute("UPDATE raw_products SET image_urls = '[]' WHERE external_id = 'OK'")
    add(db, "GOOD", 1)

    summary = sync.run(rt)

    assert summary.synced == 2 and summary.errors == 5  # E429 recovers after Retry-After; GOOD works
    assert fetch_product(db, "E429")["ximilar_status"] == "synced"
    msgs = {
        sku: fetch_product(db, sku)["ximilar_error_message"]
        for sku in ("E500", "EMAL", "EREF", "ESLOW", "OK")
    }
    assert "HTTP 500" in msgs["E500"] and "after 3 attempt(s)" in msgs["E500"]
    assert "malformed JSON" in msgs["EMAL"]
    assert "refused record(s): EREF_1: 400 Image could not be downloaded" in msgs["EREF"]
    assert "ReadTimeout" in msgs["ESLOW"]
    assert "image_urls is empty" in msgs["OK"]
    assert all(fetch_product(db, s)["ximilar_attempts"] == 1 for s in msgs)
    assert rt.metrics.app.registry.get_sample_value("ximilar_sync_errors") == pytest.approx(5 / 7)


def test_retry_resends_failures_until_max_attempts(
    db: psycopg.Connection[Any], rt: Runtime, ximilar: tuple[XimilarSimulator, str]
) -> None:
    sim = ximilar[0]
    add(db, "R1", 2)
    add(db, "R2", 2)
    sim.record_faults["R1"] = sim.record_faults["R2"] = "500"
    sync.run(rt)
    assert sync.run(rt, retry=True).errors == 2  # still failing: each tried once per run
    del sim.record_faults["R1"]
    db.execute("UPDATE raw_products SET ximilar_attempts = 5 WHERE external_id = 'R2'")
    summary = sync.run(rt, retry=True)
    assert (summary.products, summary.synced) == (1, 1)
    r1 = fetch_product(db, "R1")
    assert (r1["ximilar_status"], r1["ximilar_attempts"], r1["ximilar_error_message"]) == ("synced", 0, None)
    assert fetch_product(db, "R2")["ximilar_status"] == "error"


def test_wrong_token_is_an_error_not_a_crash(
    db: psycopg.Connection[Any], staging: tuple[str, str], ximilar: tuple[XimilarSimulator, str]
) -> None:
    add(db, "T1", 1)
    bad = make_runtime(staging, ximilar[1], ximilar_api_token="wrong")
    summary = sync.run(bad)
    assert summary.errors == 1
    assert "HTTP 401" in fetch_product(db, "T1")["ximilar_error_message"]
    assert "wrong" not in fetch_product(db, "T1")["ximilar_error_message"]


@pytest.fixture
def own() -> Iterator[tuple[XimilarSimulator, str]]:
    """A simulator of its own: a slow insert of another test may still land in the shared one."""
    yield from serving(XimilarSimulator())


def test_weekly_run_deletes_stale_records(
    db: psycopg.Connection[Any], staging: tuple[str, str], own: tuple[XimilarSimulator, str]
) -> None:
    sim, rt = own[0], make_runtime(staging, own[1])
    for sku, photos in (("KEEP", 3), ("SHRINK", 3), ("GONE", 2)):
        add(db, sku, photos)
    assert sync.run(rt).records == 8
    sim.records["FOREIGN"] = {"_id": "FOREIGN", "_url": "https://elsewhere.test/x.jpg"}  # not ours
    db.execute("DELETE FROM raw_products WHERE external_id = 'GONE'")  # the scraper's cleanup
    db.execute(  # re-scraped with one photo and synced again
        "UPDATE raw_products SET image_urls = jsonb_build_array(image_urls->0) WHERE external_id = 'SHRINK'"
    )

    assert sync.run(rt, retry=True).stale_deleted == 0  # only the weekly run looks
    before = len(sim.received)
    summary = sync.run(rt)

    assert (summary.stale_deleted, summary.stale_error) == (4, None)
    assert sorted(sim.records) == ["FOREIGN", "KEEP_1", "KEEP_2", "KEEP_3", "SHRINK_1"]
    deletes = [r["json"]["records"] for r in sim.received[before:] if r["route"] == "delete"]
    assert sorted(d["_id"] for batch in deletes for d in batch) == [
        "GONE_1",
        "GONE_2",
        "SHRINK_2",
        "SHRINK_3",
    ]


def test_stale_check_failures_are_reported_and_an_empty_catalog_deletes_nothing(
    db: psycopg.Connection[Any], staging: tuple[str, str], own: tuple[XimilarSimulator, str]
) -> None:
    sim, rt = own[0], make_runtime(staging, own[1])
    add(db, "P1", 2)
    sim.fault("all_records", "down")
    summary = sync.run(rt)
    assert summary.synced == 1 and summary.stale_error is not None and "HTTP 503" in summary.stale_error
    sim.fault("all_records", None)
    db.execute("DELETE FROM raw_products")
    before = len(sim.received)
    assert sync.run(rt).stale_deleted == 0
    assert not [r for r in sim.received[before:] if r["route"] in ("all_records", "delete")]
    assert sorted(sim.records) == ["P1_1", "P1_2"]
