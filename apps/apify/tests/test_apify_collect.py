"""Collecting a brand through a loopback Apify API into the project's staging schema (``apify``
login): every brand's item shape, upsert rules (new / changed images / unchanged), one scraper_logs
row per run, faults (actor failure, start refused, 429 + Retry-After, 5xx, malformed JSON, bad
items), resuming a run a killed worker left behind, hidden/empty dataset rows mid-page, a lost
run-start answer (never a second run) and aborting a run that outlives its timeout."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from apify import collect
from apify.client import ApifyError
from apify.collectors import BRANDS
from apify.runtime import Runtime
from apify.settings import ApifySettings
from unde_testkit.apptests import serving, staging_database, truncated
from unde_testkit.catalog_testing import ApifySimulator, apify_item
from unde_testkit.testing import PostgresHandle

DB = "cat_apify"


@pytest.fixture(scope="module")
def staging(pg: PostgresHandle) -> tuple[str, str]:
    return staging_database(pg, DB, "apify", "unde_staging_apify")


@pytest.fixture(scope="module")
def apify_api() -> Iterator[tuple[ApifySimulator, str]]:
    yield from serving(ApifySimulator())


@pytest.fixture
def sim(apify_api: tuple[ApifySimulator, str]) -> ApifySimulator:
    s = apify_api[0]
    s.datasets.clear()
    s.reset()
    return s


@pytest.fixture
def db(staging: tuple[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with truncated(staging[0], "raw_products", "scraper_logs") as conn:
        yield conn


@pytest.fixture
def rt(staging: tuple[str, str], apify_api: tuple[ApifySimulator, str]) -> Runtime:
    values: dict[str, Any] = {
        "staging_db_url": staging[1],
        "apify_base_url": f"{apify_api[1]}/v2",
        "apify_token": "apify-test-token",
        "apify_page_size": 4,
        "apify_wait_poll_s": 0,
        "apify_run_timeout_s": 20,
        "http_backoff_base_s": 0.05,
        "http_read_timeout_s": 2,
        "apify_start_lookup_s": 5,
    }
    settings = ApifySettings(**values)
    return Runtime(settings)


def images(ext: str, n: int = 3) -> list[str]:
    return [f"https://static.brand.test/{ext}/{i}.jpg" for i in range(1, n + 1)]


def last_log(db: psycopg.Connection[Any]) -> dict[str, Any]:
    row = db.execute("SELECT * FROM scraper_logs ORDER BY id DESC LIMIT 1").fetchone()
    assert row is not None
    return dict(row)


def test_every_brand_shape_maps_to_raw_products(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator
) -> None:
    for brand in BRANDS:
        sim.datasets[f"datasaurus/{brand}"] = [
            apify_item(brand, f"{brand}-{i}", images(f"{brand}-{i}")) for i in range(5)
        ]
        summary = collect.collect(rt, brand)
        assert (summary.status, summary.fetched, summary.new, summary.errors) == ("success", 5, 5, 0), brand
    assert sim.started == [f"datasaurus/{b}" for b in BRANDS]
    zara = db.execute("SELECT * FROM raw_products WHERE external_id = 'zara-0'").fetchone()
    assert zara is not None
    assert (zara["source"], zara["brand"], zara["price"], zara["category"], zara["colour"]) == (
        "apify_zara",
        "zara",
        Decimal("15990.00"),  # tiyn → tenge
        "woman-dresses",  # datasaurus/zara's category slug
        "BLACK",
    )
    assert zara["composition"] == "OUTER SHELL: 100% linen"
    assert zara["sizes"] == ["S", "M"] and zara["original_image_urls"] == images("zara-0")
    assert (zara["image_status"], zara["sync_status"], zara["ximilar_status"]) == (
        "pending",
        "pending",
        "pending",
    )
    md = db.execute(
        "SELECT price, category FROM raw_products WHERE external_id = 'massimodutti-1'"
    ).fetchone()
    assert md == {"price": Decimal("89990.00"), "category": "Women / Blazers"}
    counts = db.execute(
        "SELECT brand, count(*) AS n FROM raw_products GROUP BY brand ORDER BY brand"
    ).fetchall()
    assert [(r["brand"], r["n"]) for r in counts] == [(b, 5) for b in sorted(BRANDS)]
    logs = db.execute(
        "SELECT scraper_name, status, records_fetched, records_new, run_id FROM scraper_logs"
    ).fetchall()
    assert len(logs) == 6 and all(
        r["status"] == "success" and r["records_new"] == 5 and r["run_id"] for r in logs
    )
    reg = rt.metrics.app.registry
    assert reg.get_sample_value("apify_scraper_errors", {"brand": "oysho"}) == 0
    assert reg.get_sample_value("apify_scraper_duration", {"brand": "zara"}) is not None
    # the actor got its documented input (apify.com/datasaurus/zara/api/python), the run its options
    first_run = next(iter(sim.runs.values()))
    assert first_run["input"] == {
        "start_urls": [{"url": "https://www.zara.com/kz/en/"}],
        "max_results": 20000,
    }
    assert (first_run["options"]["timeoutSecs"], first_run["options"]["maxItems"]) == (20, 20000)
    assert first_run["meta"]["userAgent"].startswith("unde-apify/apify_zara/")


def test_upsert_requeues_changed_images_and_keeps_the_rest(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator
) -> None:
    sim.datasets["datasaurus/bershka"] = [apify_item("bershka", f"b{i}", images(f"b{i}")) for i in range(3)]
    collect.collect(rt, "bershka")
    db.execute(
        "UPDATE raw_products SET image_status = 'collage_ready', sync_status = 'synced', "
        "image_urls = '[\"x\"]', collage_url = 'c' WHERE brand = 'bershka'"
    )
    sim.datasets["datasaurus/bershka"] = [
        apify_item("bershka", "b0", images("b0")),  # unchanged
        apify_item("bershka", "b1", images("b1"), price="6990.00"),  # price changed
        apify_item("bershka", "b2", images("b2", 4)),  # a new photo
        apify_item("bershka", "b3", images("b3")),  # new product
    ]

    summary = collect.collect(rt, "bershka")

    assert (summary.fetched, summary.new, summary.updated, summary.unchanged) == (4, 1, 2, 1)
    rows = {r["external_id"]: r for r in db.execute("SELECT * FROM raw_products").fetchall()}
    assert (rows["b0"]["image_status"], rows["b0"]["sync_status"]) == ("collage_ready", "synced")
    assert (rows["b1"]["image_status"], rows["b1"]["sync_status"]) == ("collage_ready", "pending")
    assert rows["b1"]["price"] == Decimal("6990.00")
    assert (rows["b2"]["image_status"], rows["b2"]["sync_status"]) == ("pending", "pending")
    assert rows["b3"]["image_status"] == "pending"
    assert rows["b0"]["scraped_at"] > rows["b0"]["created_at"]  # last seen refreshed
    log = last_log(db)
    assert (log["records_fetched"], log["records_new"], log["records_updated"]) == (4, 1, 2)


def test_malformed_items_are_counted_not_fatal(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator
) -> None:
    sim.datasets["datasaurus/zara"] = [
        apify_item("zara", "ok1", images("ok1")),
        apify_item("zara", "noimg", []),
        apify_item("zara", "badprice", images("bp"), price="abc"),
        {"name": "no id"},
        "not an object",
        apify_item("zara", "ok2", images("ok2")),
    ]
    summary = collect.collect(rt, "zara")
    assert (summary.status, summary.fetched, summary.new, summary.errors) == ("partial", 6, 2, 4)
    log = last_log(db)
    assert log["status"] == "partial" and log["records_errors"] == 4
    assert "item 1: no image URLs" in log["error_message"]
    assert log["metadata"]["item_errors"][1:] == [
        "item 2: price 'abc' is not a number",
        "item 3: missing colorsSizesImagesJSON",
        "item 4: item is not an object (str)",
    ]
    assert rt.metrics.app.registry.get_sample_value(
        "apify_scraper_errors", {"brand": "zara"}
    ) == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("actor_failed", "ended FAILED: The actor crashed (injected)"),
        ("start_refused", "starting actor datasaurus/oysho failed"),
        ("malformed_page", "malformed JSON"),
        ("always_500", "HTTP 500"),
    ],
)
def test_provider_failures_end_in_a_failed_log_row(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator, fault: str, expected: str
) -> None:
    sim.datasets["datasaurus/oysho"] = [apify_item("oysho", f"o{i}", images(f"o{i}")) for i in range(6)]
    if fault == "actor_failed":
        sim.final_status["datasaurus/oysho"] = "FAILED"
    elif fault == "start_refused":
        sim.start_status = 402
    elif fault == "malformed_page":
        sim.page_faults = [None, "malformed"]  # first page fine, second truncated
    else:
        sim.page_faults = ["500"] * 5

    summary = collect.collect(rt, "oysho")

    assert summary.status == "failed"
    log = last_log(db)
    assert log["status"] == "failed" and expected in log["error_message"], log["error_message"]
    assert log["completed_at"] is not None and log["duration_seconds"] is not None
    assert rt.metrics.app.registry.get_sample_value("apify_scraper_errors", {"brand": "oysho"}) == 1.0
    if fault == "malformed_page":
        assert log["records_fetched"] == 4  # the first page was kept


def test_rate_limits_and_5xx_on_pages_are_retried(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator
) -> None:
    sim.datasets["datasaurus/pullandbear"] = [
        apify_item("pullandbear", f"p{i}", images(f"p{i}")) for i in range(9)
    ]
    sim.page_faults = ["429", None, "500"]
    sim.running_polls = 3  # the run is RUNNING for three polls
    summary = collect.collect(rt, "pullandbear")
    assert (summary.status, summary.fetched, summary.new) == ("success", 9, 9)
    # 429 then the same page again, 500 then the same page again, then the last page
    assert [r["offset"] for r in sim.item_requests] == ["0", "0", "4", "4", "8"]


def test_a_run_left_behind_by_a_killed_worker_is_resumed(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator
) -> None:
    sim.datasets["datasaurus/stradivarius"] = [
        apify_item("stradivarius", f"s{i}", images(f"s{i}")) for i in range(10)
    ]
    sim.page_faults = [None, "malformed"]
    collect.collect(rt, "stradivarius")  # page 1 stored, then the "worker dies" (simulated below)
    # what a SIGKILL after page 1 leaves: the row still 'running' with the offset reached
    db.execute(
        "UPDATE scraper_logs SET status = 'running', completed_at = NULL, error_message = NULL "
        "WHERE scraper_name = 'apify_stradivarius'"
    )
    started_before = len(sim.started)

    summary = collect.collect(rt, "stradivarius")

    assert summary.resumed and summary.status == "success"
    assert len(sim.started) == started_before  # no new (paid) actor run
    assert (summary.fetched, summary.new) == (10, 10)
    assert db.execute("SELECT count(*) AS n FROM raw_products").fetchone() == {"n": 10}
    logs = db.execute("SELECT status, records_fetched FROM scraper_logs").fetchall()
    assert logs == [{"status": "success", "records_fetched": 10}]  # still one row for the run


def test_hidden_and_empty_rows_mid_page_are_collected_whole_and_once(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator, apify_api: tuple[ApifySimulator, str]
) -> None:
    rows: list[Any] = []
    for i in range(10):
        rows.append(apify_item("bershka", f"h{i}", images(f"h{i}"), **{"#debug": {"page": i}}))
        if i in (1, 2, 5):  # empty rows inside the first and second page windows
            rows.append({})
    rows.insert(3, {"#error": "only hidden fields"})
    sim.datasets["datasaurus/bershka"] = rows  # 14 rows, pages of 4

    summary = collect.collect(rt, "bershka")

    assert (summary.status, summary.fetched, summary.new, summary.errors) == ("success", 10, 10, 0)
    ids = [
        r["external_id"] for r in db.execute("SELECT external_id FROM raw_products ORDER BY id").fetchall()
    ]
    assert sorted(ids) == sorted(f"h{i}" for i in range(10))  # every product, each exactly once
    raw = db.execute("SELECT raw_data FROM raw_products WHERE external_id = 'h4'").fetchone()
    assert raw is not None and "#debug" not in raw["raw_data"]  # hidden fields dropped, as clean would
    # raw rows read by offset/limit without clean; the offset advanced by the rows read
    assert [(r["offset"], r["limit"], "clean" in r) for r in sim.item_requests] == [
        ("0", "4", False),
        ("4", "4", False),
        ("8", "4", False),
        ("12", "4", False),
    ]
    log = last_log(db)
    assert log["metadata"]["offset"] == 14
    # the strict simulator's clean page on the same window is short although the dataset goes on
    run_ds = next(iter(sim.runs.values()))["defaultDatasetId"]
    page = httpx.get(
        f"{apify_api[1]}/v2/datasets/{run_ds}/items",
        params={"clean": "true", "offset": 0, "limit": 4},
        headers={"Authorization": "Bearer apify-test-token"},
    )
    assert len(page.json()) == 2
    assert {k: page.headers[f"x-apify-pagination-{k}"] for k in ("offset", "limit", "count", "total")} == {
        "offset": "0",
        "limit": "4",
        "count": "4",
        "total": "14",
    }


@pytest.mark.parametrize("fault", ["drop", "slow"])
def test_a_lost_run_start_answer_does_not_start_a_second_run(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator, fault: str
) -> None:
    sim.datasets["datasaurus/oysho"] = [apify_item("oysho", f"l{i}", images(f"l{i}")) for i in range(5)]
    sim.start_fault = fault  # the run starts, then the answer is lost (connection drop / read timeout)
    sim.start_delay_s = 3.0  # > HTTP_READ_TIMEOUT_S
    sim.list_lag = 1  # the first listing does not show the new run yet

    summary = collect.collect(rt, "oysho")

    assert summary.status == "success" and (summary.fetched, summary.new) == (5, 5)
    assert sim.started == ["datasaurus/oysho"]  # one paid run
    starts = [r for r in sim.requests if r["method"] == "POST" and r["path"].endswith("/runs")]
    assert len(starts) == 1  # the start was sent once, never retried
    lookups = [
        r for r in sim.requests if r["method"] == "GET" and r["path"] == "/v2/acts/datasaurus~oysho/runs"
    ]
    assert len(lookups) == 2 and lookups[0]["query"]["desc"] == "1" and "startedAfter" in lookups[0]["query"]
    log = last_log(db)
    assert log["status"] == "success" and log["run_id"] == next(iter(sim.runs))


def test_an_ambiguous_start_without_a_run_fails_without_a_second_start(
    db: psycopg.Connection[Any], rt: Runtime, sim: ApifySimulator
) -> None:
    sim.datasets["datasaurus/oysho"] = [apify_item("oysho", "n1", images("n1"))]
    sim.start_status = 503  # refused before a run exists: the lookup finds nothing
    quick = Runtime(ApifySettings(**{**rt.settings.model_dump(), "apify_start_lookup_s": 0.2}))

    summary = collect.collect(quick, "oysho")

    assert summary.status == "failed"
    assert "no run of it started since" in (summary.error_message or "")
    assert [r["method"] for r in sim.requests if r["path"].endswith("/runs")].count("POST") == 1
    assert sim.started == []


def test_a_run_that_outlives_its_timeout_is_aborted(rt: Runtime, sim: ApifySimulator) -> None:
    sim.datasets["datasaurus/zara"] = []
    sim.running_polls = -1  # RUNNING forever
    run = rt.apify.start_run("datasaurus/zara", {"start_urls": [], "max_results": 1})

    with pytest.raises(ApifyError, match="still RUNNING after 1s; aborted"):
        rt.apify.wait_run(run["id"], timeout_s=1.2)

    assert sim.aborted == [run["id"]] and sim.runs[run["id"]]["status"] == "ABORTED"
    abort = sim.requests[-1]
    assert (abort["method"], abort["path"]) == ("POST", f"/v2/actor-runs/{run['id']}/abort")
