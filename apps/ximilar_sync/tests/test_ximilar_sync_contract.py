"""ximilar_sync's Ximilar calls against the documented requests and answers (``contracts/*.json``,
each naming its source): the real client sends exactly the fixture's request to the strict
simulator and parses the fixture's answer; the simulator refuses what the real service refuses
(more than 10 records, a path of another service, an unknown collection, a bad token)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from unde_testkit.apptests import serving
from unde_testkit.catalog_testing import XimilarSimulator
from unde_testkit.recognition_simulators import XIMILAR_MAX_RECORDS, XIMILAR_SERVICE
from ximilar_sync import sync
from ximilar_sync.runtime import Runtime
from ximilar_sync.settings import XimilarSyncSettings

CONTRACTS = Path(__file__).parent / "contracts"


def contract(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONTRACTS / f"{name}.json").read_text())
    assert data["source"]
    return data


@pytest.fixture
def ximilar() -> Iterator[tuple[XimilarSimulator, str]]:
    yield from serving(XimilarSimulator())


def runtime(base: str, **overrides: Any) -> Runtime:
    values: dict[str, Any] = {
        "ximilar_base_url": base,
        "ximilar_api_token": "ximilar-test-token",
        "ximilar_collection_id": "coll-test",
        "http_backoff_base_s": 0.05,
        **overrides,
    }
    return Runtime(XimilarSyncSettings(**values))


def sent(sim: XimilarSimulator, route: str) -> dict[str, Any]:
    """The last request the simulator got on ``route``, in the fixtures' request shape."""
    got = [r for r in sim.received if r["route"] == route][-1]
    return {k: got[k] for k in ("method", "path", "query", "headers", "json")}


def test_the_settings_name_the_simulated_service() -> None:
    fields = XimilarSyncSettings.model_fields
    assert fields["ximilar_service_path"].default == XIMILAR_SERVICE
    assert fields["ximilar_batch_records"].default == XIMILAR_MAX_RECORDS


def test_insert_sends_the_documented_request_and_parses_the_answer(
    ximilar: tuple[XimilarSimulator, str],
) -> None:
    sim, base = ximilar
    doc = contract("ximilar_insert")
    records = doc["request"]["json"]["records"]
    sync.send(runtime(base), records)
    assert sent(sim, "insert") == doc["request"]
    assert sim.records["0123456789_1"]["sku_id"] == "0123456789"
    # the documented answer: every record accepted
    answered = sync.answer_records(doc["response"]["json"], len(records))
    assert [sync.record_code(r) for r in answered] == [(201, "CREATED")]
    # the simulator answers in the same shape
    assert sim.received and set(doc["response"]["json"]) == {"records", "status", "statistics"}


def test_more_than_ten_records_is_refused_as_documented(ximilar: tuple[XimilarSimulator, str]) -> None:
    sim, base = ximilar
    doc = contract("ximilar_insert_over_limit")
    records = [{"_id": f"S_{n}", "_url": f"https://objects.test/{n}.jpg"} for n in range(11)]
    answer = httpx.post(
        base + doc["request"]["path"],
        json={"records": records},
        headers={"Authorization": "Token ximilar-test-token", "collection-id": "coll-test"},
    )
    assert (answer.status_code, answer.json()) == (doc["response"]["status"], doc["response"]["json"])
    assert sim.records == {}


def test_a_product_with_many_photos_goes_in_batches_of_ten(ximilar: tuple[XimilarSimulator, str]) -> None:
    sim, base = ximilar
    records = [
        {"_id": f"M_{n}", "_url": f"https://objects.test/{n}.jpg", "sku_id": "M"} for n in range(1, 24)
    ]
    sync.send(runtime(base), records)
    inserts = [r for r in sim.received if r["route"] == "insert"]
    assert [len(r["json"]["records"]) for r in inserts] == [10, 10, 3]
    assert sorted(sim.records) == sorted(r["_id"] for r in records)


def test_delete_and_all_records_send_the_documented_requests(ximilar: tuple[XimilarSimulator, str]) -> None:
    sim, base = ximilar
    rt = runtime(base, ximilar_page_size=2)
    sync.send(
        rt,
        [{"_id": f"A1_{n}", "_url": f"https://objects.test/{n}.jpg", "sku_id": "A1", "brand": "zara",
          "image_index": n} for n in (1, 2, 3)] + [{"_id": "GONE_1", "_url": "https://objects.test/g.jpg"}],
    )  # fmt: skip
    listed = list(sync.list_records(rt))
    doc = contract("ximilar_all_records")
    first_page = next(r for r in sim.received if r["route"] == "all_records")
    assert {k: first_page[k] for k in doc["request"]} == doc["request"]
    assert [r["_id"] for r in listed] == ["A1_1", "A1_2", "A1_3", "GONE_1"]  # 2 pages + a short one
    assert listed[0] == doc["response"]["json"]["answer_records"][0]

    doc = contract("ximilar_delete")
    assert sync.delete_records(rt, ["GONE_1", "NEVER_1"]) == 2  # deleted + already absent
    assert sent(sim, "delete") == doc["request"]
    assert "GONE_1" not in sim.records
    answered = sync.answer_records(doc["response"]["json"], 2)
    assert [sync.record_code(r)[0] for r in answered] == [200, 404]


def test_the_simulator_refuses_what_ximilar_refuses(ximilar: tuple[XimilarSimulator, str]) -> None:
    sim, base = ximilar
    body = {"records": [{"_id": "X_1", "_url": "https://objects.test/x.jpg"}]}
    auth = {"Authorization": "Token ximilar-test-token", "collection-id": "coll-test"}
    other_services = [
        "/similarity/photos/v2/insert",
        "/photo/search/v2/insert",
        "/similarity/fashion/v2/insert",
    ]
    for path in other_services:  # a collection belongs to one service
        answer = httpx.post(base + path, json=body, headers=auth)
        assert (answer.status_code, answer.json()) == (404, {"detail": "Not found."}), path
    unknown = httpx.post(
        base + f"{XIMILAR_SERVICE}/insert", json=body, headers={**auth, "collection-id": "nope"}
    )
    assert unknown.status_code == 404
    bad = httpx.post(
        base + f"{XIMILAR_SERVICE}/insert", json=body, headers={**auth, "Authorization": "Token x"}
    )
    assert (bad.status_code, bad.json()) == (401, {"detail": "Invalid token."})
    none = httpx.post(base + f"{XIMILAR_SERVICE}/insert", json=body, headers={"collection-id": "coll-test"})
    assert none.status_code == 401
    no_image = httpx.post(
        base + f"{XIMILAR_SERVICE}/insert", json={"records": [{"_id": "Y_1"}]}, headers=auth
    )
    assert no_image.json()["records"][0]["_status"]["code"] == 400
    assert sim.records == {}


def test_a_wrong_service_path_fails_the_product_loudly(ximilar: tuple[XimilarSimulator, str]) -> None:
    _, base = ximilar
    rt = runtime(base, ximilar_service_path="/similarity/photos/v2")
    with pytest.raises(sync.XimilarSyncError, match="HTTP 404"):
        sync.send(rt, [{"_id": "W_1", "_url": "https://objects.test/w.jpg"}])
