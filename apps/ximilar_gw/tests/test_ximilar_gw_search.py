"""ximilar-gw against a Ximilar simulator, the embedder and PostgreSQL + pgvector: /detect, /tag,
/search in every SEARCH_BACKEND, the conditional thresholds, faults, the shared rate limiter and
the spec 01 §19 metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from unde_testkit.recognition_testbed import PHOTO_ITEMS, Stack
from unde_testkit.service_auth import service_client
from unde_testkit.testing import free_port
from ximilar_gw.app import create
from ximilar_gw.rate_limiter import RedisRateLimiter
from ximilar_gw.search import Candidate, merge, needs_booster


def gw(bed: Stack, **overrides: Any) -> TestClient:
    return service_client(create(bed.gateway_settings(**overrides)))


def crop(bed: Stack, index: int) -> str:
    x1, y1, x2, y2 = PHOTO_ITEMS[index][1]
    return f"{bed.photo_url}#xywh={x1},{y1},{x2 - x1},{y2 - y1}"


def test_detect_returns_regions_of_the_photo(sims: Stack) -> None:
    with gw(sims) as client:
        answer = client.post("/detect", json={"url": sims.photo_url})
        plain = client.post("/detect", json={"url": f"{sims.images}/img/catalog/FILL-0.png"})
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [i["crop_url"] for i in items] == [crop(sims, i) for i in range(3)]
    assert [i["category"] for i in items] == ["jackets", "jackets", "tops"]
    assert plain.json()["items"] == []  # nothing detected is an answer, not an error


def test_tag_returns_the_attributes(sims: Stack) -> None:
    with gw(sims) as client:
        answer = client.post("/tag", json={"url": crop(sims, 2)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["color"] == "black" and answer.json()["type"] == "Jackets"


@pytest.mark.parametrize(
    ("backend", "index", "booster", "sources"),
    [
        ("pgvector", 1, False, {"pgvector"}),
        ("ximilar", 0, False, {"ximilar"}),
        ("dual", 0, True, {"pgvector", "ximilar"}),
        ("conditional", 0, False, {"pgvector"}),  # the very same picture: top-1 1.0, clear margin
        ("conditional", 1, True, {"pgvector", "ximilar"}),  # unsure: the booster runs
    ],
)
def test_search_backends(sims: Stack, backend: str, index: int, booster: bool, sources: set[str]) -> None:
    with gw(sims, search_backend=backend) as client:
        answer = client.post(
            "/search", json={"crop_url": crop(sims, index), "category": "jackets", "top_k": 5}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["backend"] == backend and body["used_ximilar_booster"] is booster
    assert {s for c in body["candidates"] for s in c["sources"]} == sources
    assert sims.ximilar.hits["search"] == (1 if "ximilar" in sources else 0)
    skus = [c["sku_id"] for c in body["candidates"]]
    assert len(skus) == len(set(skus)) <= 5
    # the second item's nearest SKUs are GONE-1 (out of stock: the orchestrator filters it) and SIM-A
    assert skus[0] in (("EXACT-1",) if index == 0 else ("GONE-1", "SIM-A"))
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)


def test_conditional_thresholds_come_from_settings(sims: Stack) -> None:
    with gw(sims, confidence_threshold=0.0, margin=0.0) as client:
        relaxed = client.post("/search", json={"crop_url": crop(sims, 1)}).json()
    with gw(sims, margin=1.0) as client:
        strict = client.post("/search", json={"crop_url": crop(sims, 0)}).json()
        forced = client.post("/search", json={"crop_url": crop(sims, 0), "force_booster": True}).json()
    assert relaxed["used_ximilar_booster"] is False
    assert strict["used_ximilar_booster"] is True
    assert forced["used_ximilar_booster"] is True


def test_booster_rules() -> None:
    assert needs_booster([], threshold=0.8, margin=0.1)
    assert needs_booster([0.79, 0.5], threshold=0.8, margin=0.1)
    assert needs_booster([0.95, 0.9], threshold=0.8, margin=0.1)
    assert not needs_booster([0.95, 0.8], threshold=0.8, margin=0.1)
    assert not needs_booster([0.95], threshold=0.8, margin=0.1)
    merged = merge(
        [Candidate("a", 0.7, sources=["pgvector"]), Candidate("b", 0.6, sources=["pgvector"])],
        [Candidate("a", 0.9, sources=["ximilar"]), Candidate("c", 0.65, sources=["ximilar"])],
        top_k=2,
    )
    assert [(c.sku_id, c.score, c.sources) for c in merged] == [
        ("a", 0.9, ["pgvector", "ximilar"]),
        ("c", 0.65, ["ximilar"]),
    ]


def test_provider_faults_answer_502_naming_ximilar(sims: Stack) -> None:
    with gw(sims, ximilar_max_attempts=2) as client:
        sims.ximilar.fault("detect", "503")
        unavailable = client.post("/detect", json={"url": sims.photo_url})
        sims.ximilar.fault("detect", "malformed")
        malformed = client.post("/detect", json={"url": sims.photo_url})
        sims.ximilar.fault("detect", "429", times=1)
        after_429 = client.post("/detect", json={"url": sims.photo_url})
        metrics = client.get("/metrics").text
    assert unavailable.status_code == 502 and "ximilar" in unavailable.json()["detail"]
    assert "HTTP 503" in unavailable.json()["detail"]
    assert malformed.status_code == 502 and "malformed JSON" in malformed.json()["detail"]
    assert after_429.status_code == 200  # Retry-After honoured, then answered
    assert 'ximilar_gw_rate_limit_hits_total{source="ximilar"} 1.0' in metrics
    assert 'ximilar_gw_errors_total{endpoint="detect",reason="ximilar"} 2.0' in metrics


def test_a_failing_source_degrades_the_search(sims: Stack) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with gw(sims, embedder_url=dead) as client:
        no_embedder = client.post("/search", json={"crop_url": crop(sims, 0)}).json()
        sims.ximilar.fault("search", "down")
        nothing = client.post("/search", json={"crop_url": crop(sims, 0)})
    assert no_embedder["used_ximilar_booster"] is True and no_embedder["candidates"][0]["sku_id"] == "EXACT-1"
    assert no_embedder["degraded"][0].startswith("pgvector")
    assert nothing.status_code == 502 and "every source" in nothing.json()["detail"]
    with gw(sims, search_backend="conditional") as client:
        ok = client.post("/search", json={"crop_url": crop(sims, 0)}).json()  # Ximilar down, not needed
    assert ok["candidates"][0]["sku_id"] == "EXACT-1" and ok["degraded"] == []


def test_bad_input_is_a_4xx_naming_the_problem(sims: Stack) -> None:
    with gw(sims) as client:
        answers = {
            "html": client.post("/detect", json={"url": f"{sims.images}/img-html/x"}),
            "unreachable": client.post("/tag", json={"url": f"http://127.0.0.1:{free_port()}/a.png"}),
            "region": client.post("/search", json={"crop_url": f"{sims.photo_url}#xywh=5000,5000,10,10"}),
            "body": client.post("/search", json={"top_k": 5}),
            "top_k": client.post("/search", json={"crop_url": sims.photo_url, "top_k": 1000}),
        }
    assert {k: r.status_code for k, r in answers.items()} == {
        "html": 415,
        "unreachable": 422,
        "region": 422,
        "body": 422,
        "top_k": 422,
    }
    assert "outside" in answers["region"].json()["detail"]


def test_one_rate_limiter_for_every_worker(sims: Stack) -> None:
    async def run() -> tuple[int, float]:
        a = aioredis.Redis.from_url(sims.redis_url)
        b = aioredis.Redis.from_url(sims.redis_url)
        try:
            await a.delete("ratelimit:shared-test")
            one = RedisRateLimiter(a, "shared-test", rate=0.5, burst=4)
            two = RedisRateLimiter(b, "shared-test", rate=0.5, burst=4)
            waits = [await (one if i % 2 else two).try_acquire() for i in range(10)]
            return sum(1 for w in waits if w == 0.0), max(waits)
        finally:
            await a.aclose()
            await b.aclose()

    granted, longest = asyncio.run(run())
    assert granted == 4  # the burst, across both "workers"
    assert longest > 0
    with gw(
        sims, ximilar_rate_limit_per_s=0.01, ximilar_rate_limit_burst=1, ximilar_rate_limit_wait_s=0
    ) as client:
        asyncio.run(_reset(sims.redis_url))
        first = client.post("/tag", json={"url": crop(sims, 0)})
        second = client.post("/tag", json={"url": crop(sims, 0)})
        metrics = client.get("/metrics").text
    asyncio.run(_reset(sims.redis_url))
    assert first.status_code == 200
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert "rate limit" in second.json()["detail"]
    assert 'ximilar_gw_rate_limit_hits_total{source="local"} 1.0' in metrics


async def _reset(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.delete("ratelimit:ximilar")
    await client.aclose()


def test_metrics_of_spec_01(sims: Stack) -> None:
    with gw(sims) as client:
        client.post("/detect", json={"url": sims.photo_url})
        client.post("/search", json={"crop_url": crop(sims, 1)})
        text = client.get("/metrics").text
    for name in (
        "ximilar_gw_detect_latency_ms_bucket",
        "ximilar_gw_search_latency_ms_bucket",
        "ximilar_gw_requests_total",
        "pgvector_knn_latency_ms_bucket",
        "pgvector_knn_results_count",
        "ximilar_booster_rate",
        'ximilar_gw_searches_total{backend="conditional",booster="true"} 1.0',
    ):
        assert name in text, name
