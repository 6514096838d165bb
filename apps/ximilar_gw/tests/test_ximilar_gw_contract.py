"""ximilar-gw's Ximilar calls against the documented requests and answers (``contracts/*.json``,
each naming its source), and the catalog round trip: what ximilar_sync's real client inserts, the
gateway's search finds with its metadata, both against one strict simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psycopg
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from unde_testkit.recognition_simulators import XIMILAR_DEFAULT_FIELDS, XIMILAR_SERVICE, solid_image
from unde_testkit.recognition_testbed import PHOTO_ITEMS, Stack
from unde_testkit.service_auth import service_client
from ximilar_gw.app import create
from ximilar_gw.routes.search import _ximilar_candidate
from ximilar_gw.routes.tag import attributes
from ximilar_gw.settings import XimilarGwSettings
from ximilar_gw.ximilar import RECORD_FIELDS
from ximilar_sync import sync
from ximilar_sync.runtime import Runtime
from ximilar_sync.settings import XimilarSyncSettings

CONTRACTS = Path(__file__).parent / "contracts"
B64 = "_base64"


def contract(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONTRACTS / f"{name}.json").read_text())
    assert data["source"]
    return data


def gw(bed: Stack, **overrides: Any) -> TestClient:
    return service_client(create(bed.gateway_settings(**overrides)))


def received(bed: Stack, route: str) -> dict[str, Any]:
    """The last request the simulator got on ``route`` (fixture shape), its image replaced by the
    fixture's placeholder once it is checked to be a real base64 picture."""
    got = [r for r in bed.ximilar.received if r["route"] == route][-1]
    body = json.loads(json.dumps(got["json"]))
    record = body["query_record"] if "query_record" in body else body["records"][0]
    assert len(record[B64]) > 100
    record[B64] = "<JPEG of the crop, base64>" if route != "detect" else "<JPEG of the photo, base64>"
    return {
        "method": got["method"],
        "path": got["path"],
        "query": got["query"],
        "headers": got["headers"],
        "json": body,
    }


def test_search_asks_for_the_metadata_ximilar_sync_stores() -> None:
    row = {
        "external_id": "S1",
        "brand": "zara",
        "name": "Coat",
        "category": "COATS",
        "price": 100,
        "currency": "KZT",
        "image_urls": ["https://objects.test/1.jpg"],
        "collage_url": "https://objects.test/c.jpg",
    }
    stored = sync.build_records(row, ["Store"], ["Mall"])[0]
    assert set(RECORD_FIELDS) == set(stored)


def test_one_service_for_both_apps() -> None:
    gw_default = XimilarGwSettings.model_fields["ximilar_service_path"].default
    assert gw_default == XimilarSyncSettings.model_fields["ximilar_service_path"].default == XIMILAR_SERVICE


def test_detect_sends_the_documented_request_and_keeps_each_objects_tags(sims: Stack) -> None:
    doc = contract("ximilar_detect")
    with gw(sims) as client:
        answer = client.post("/detect", json={"url": sims.photo_url})
    assert answer.status_code == 200, answer.text
    assert received(sims, "detect") == doc["request"]
    items = answer.json()["items"]
    assert len(items) == len(PHOTO_ITEMS)
    assert items[0]["attributes"] == {
        "type": "Jackets",
        "color": "red",
        "material": None,
        "pattern": "stripe",
    }
    assert items[2]["attributes"]["color"] == "black"
    assert set(items[0]["tags"]) == set(doc["response"]["json"]["records"][0]["_objects"][0]["_tags"])
    # the documented answer parses to the same attributes
    documented = doc["response"]["json"]["records"][0]["_objects"][0]
    assert attributes(documented["_tags"]) == items[0]["attributes"]
    assert sims.ximilar.hits["tag"] == 0


def test_tag_sends_the_documented_request_and_reads_pattern_and_material(sims: Stack) -> None:
    doc = contract("ximilar_tags")
    x1, y1, x2, y2 = PHOTO_ITEMS[2][1]
    with gw(sims) as client:
        answer = client.post("/tag", json={"url": f"{sims.photo_url}#xywh={x1},{y1},{x2 - x1},{y2 - y1}"})
    assert answer.status_code == 200, answer.text
    assert received(sims, "tag") == doc["request"]
    assert attributes(doc["response"]["json"]["records"][0]["_tags"]) == {
        "type": "Jackets",
        "color": "black",
        "material": "leather",
        "pattern": "plain",
    }


def test_a_search_without_fields_to_return_gets_no_metadata(sims: Stack) -> None:
    auth = {"Authorization": f"Token {sims.ximilar.token}", "collection-id": sims.ximilar.collection_id}
    url = f"{sims.images}/img/catalog/EXACT-1.png"
    bare = httpx.post(
        f"{sims.ximilar_url}{XIMILAR_SERVICE}/visualKNN",
        json={"query_record": {"_url": url}, "k": 1},
        headers=auth,
    ).json()
    assert set(bare["answer_records"][0]) <= set(XIMILAR_DEFAULT_FIELDS)  # no sku_id: the old bug
    old = httpx.post(
        f"{sims.ximilar_url}/photo/search/v2/visualKNN", json={"query_record": {"_url": url}}, headers=auth
    )
    assert old.status_code == 404  # the collection is not in the old Photo Similarity service
    two = httpx.post(
        f"{sims.ximilar_url}{XIMILAR_SERVICE}/visualKNN",
        json={"query_record": [{"_url": url}] * 2},
        headers=auth,
    )
    assert two.status_code == 400  # one query record per search


def test_a_search_in_another_service_fails_naming_ximilar(sims: Stack) -> None:
    crop = f"{sims.images}/img/catalog/EXACT-1.png"
    with gw(sims, search_backend="ximilar", ximilar_service_path="/photo/search/v2") as client:
        answer = client.post("/search", json={"crop_url": crop})
    assert answer.status_code == 502 and "HTTP 404" in answer.json()["detail"]


def test_ximilar_sync_insert_then_gateway_search_finds_the_sku_with_its_metadata(sims: Stack) -> None:
    doc = contract("ximilar_search")
    sim = sims.ximilar
    sims.host.put("catalog/NEW-1.png", solid_image((200, 300), (20, 160, 170), stripes=2))
    url = f"{sims.images}/img/catalog/NEW-1.png"
    with psycopg.connect(sims.staging_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM raw_products WHERE external_id = 'NEW-1'")
        conn.execute(
            "INSERT INTO raw_products (source, external_id, brand, name, category, price, image_urls,"
            " image_status, scraped_at) VALUES ('apify_zara', 'NEW-1', 'zara', 'Teal coat', 'COATS',"
            " 25990, %s, 'uploaded', now())",
            (Jsonb([url]),),
        )
    settings = XimilarSyncSettings.load(
        staging_db_url=sims.staging_dsn,
        ximilar_base_url=sims.ximilar_url,
        ximilar_api_token=sim.token,
        ximilar_collection_id=sim.collection_id,
        http_backoff_base_s=0.05,
    )
    try:
        summary = sync.run(Runtime(settings))
        assert (summary.synced, summary.records, summary.stale_deleted) == (1, 1, 0)
        with gw(sims, search_backend="ximilar") as client:
            answer = client.post("/search", json={"crop_url": url, "top_k": 3})
        assert answer.status_code == 200, answer.text
        top = answer.json()["candidates"][0]
        assert (top["sku_id"], top["brand"], top["image_urls"], top["sources"]) == (
            "NEW-1",
            "zara",
            [url],
            ["ximilar"],
        )
        assert {k: top["metadata"][k] for k in ("name", "category", "price", "currency", "image_index")} == {
            "name": "Teal coat",
            "category": "COATS",
            "price": "25990.00",
            "currency": "KZT",
            "image_index": 1,
        }
        assert top["score"] > 0.9
        assert received(sims, "search") == doc["request"]
        # the documented answer makes the same candidate
        record = doc["response"]["json"]["answer_records"][0]
        candidate = _ximilar_candidate(record, 1 - doc["response"]["json"]["answer_distances"][0])
        assert candidate is not None
        assert (candidate.sku_id, candidate.brand, candidate.metadata["name"]) == (
            "NEW-1",
            "zara",
            "Teal coat",
        )
    finally:
        for rid in [r for r in sim.records if r.startswith("NEW-1_")]:
            sim.records.pop(rid)
            sim.images.pop(rid, None)
        with psycopg.connect(sims.staging_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM raw_products WHERE external_id = 'NEW-1'")


def test_billed_tagging_is_not_repeated_after_a_500_but_a_search_is(sims: Stack) -> None:
    with gw(sims, ximilar_max_attempts=2, search_backend="ximilar") as client:
        sims.ximilar.fault("detect", "500", times=1)
        failed = client.post("/detect", json={"url": sims.photo_url})
        sims.ximilar.fault("search", "500", times=1)
        found = client.post("/search", json={"crop_url": f"{sims.images}/img/catalog/EXACT-1.png"})
    assert failed.status_code == 502 and "HTTP 500" in failed.json()["detail"]
    assert sims.ximilar.hits["detect"] == 1  # a repeat could have been billed twice
    assert found.status_code == 200 and sims.ximilar.hits["search"] == 2
    assert found.json()["candidates"][0]["sku_id"] == "EXACT-1"
