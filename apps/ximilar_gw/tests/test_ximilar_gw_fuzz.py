"""The fuzz runs of the recognition services (unde_testkit.fuzz) on the recognition test bed (real
PostgreSQL with the catalog, Redis, the Ximilar/Gemini simulators, an ONNX test model): ximilar_gw,
and the embedder and llm_reranker it calls — no answer is a 5xx, none raises. And ximilar_gw with
its Redis stopped: 503 + Retry-After (it used to answer 500), served again once Redis is back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from embedder.app import create as create_embedder
from embedder.settings import EmbedderSettings
from llm_reranker.app import create as create_reranker
from llm_reranker.settings import LlmRerankerSettings
from unde_testkit.fuzz import fuzz_app
from unde_testkit.recognition_testbed import LOOPBACK_IMAGE_FETCH, Stack
from unde_testkit.service_auth import service_client
from unde_testkit.testing import redis_server
from ximilar_gw.app import create

pytestmark = pytest.mark.timeout(300)


def test_ximilar_gw_fuzz_finds_no_5xx(bed: Stack) -> None:
    with service_client(create(bed.gateway_settings())) as client:
        report = fuzz_app(client, "ximilar_gw", max_examples=30)
    print(report.summary())
    assert report.requests > 200
    assert report.findings == [], report.summary()


def test_embedder_fuzz_finds_no_5xx(bed: Stack) -> None:
    settings = EmbedderSettings.load(model_path=bed.model, **LOOPBACK_IMAGE_FETCH)
    with service_client(create_embedder(settings)) as client:
        report = fuzz_app(client, "embedder", max_examples=30)
    print(report.summary())
    assert report.requests > 80
    assert report.findings == [], report.summary()


def test_llm_reranker_fuzz_finds_no_5xx(bed: Stack) -> None:
    settings = LlmRerankerSettings.load(
        gemini_api_key=bed.gemini.api_key,
        gemini_base_url=bed.gemini_url,
        http_backoff_base_s=0.05,
        **LOOPBACK_IMAGE_FETCH,
    )
    with service_client(create_reranker(settings)) as client:
        report = fuzz_app(client, "llm_reranker", max_examples=30)
    print(report.summary())
    assert report.requests > 150
    assert report.findings == [], report.summary()


def test_redis_stopped_is_503_with_retry_after_then_served_again(bed: Stack, tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with service_client(create(bed.gateway_settings(redis_url=url))) as client:
            assert client.post("/detect", json={"url": bed.photo_url}).status_code == 200
            # stop this Redis: the rate limiter cannot answer
            pass
    with service_client(create(bed.gateway_settings(redis_url=url))) as client:
        r = client.post("/detect", json={"url": bed.photo_url})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1" and r.json()["error"] == "redis_unavailable"
        assert "127.0.0.1" not in r.text and "Traceback" not in r.text
        with redis_server(tmp_path / "redis2", port=port):
            deadline = time.monotonic() + 1.0
            while (r := client.post("/detect", json={"url": bed.photo_url})).status_code != 200:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.05)
            assert r.json()["items"]
