"""llm-reranker against a strict Gemini simulator: /tag, /rerank (parallel calls, 0.7 visual + 0.3
semantic), partial and total Gemini failures, 429 RetryInfo waits, no repeat of a lost answer,
shut-down model ids, thinking level and thought tokens in the cost, bad input, /health and the
entry point."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from llm_reranker.app import create
from llm_reranker.settings import LlmRerankerSettings
from unde_testkit.recognition_simulators import GeminiSimulator, ImageHost, solid_image
from unde_testkit.recognition_testbed import LOOPBACK_IMAGE_FETCH, serve_asgi
from unde_testkit.service_auth import service_client
from unde_testkit.testing import EnvWriter, EnvWriterFactory, assert_entry_point, assert_health_ok, free_port

MODEL = LlmRerankerSettings.model_fields["gemini_model"].default


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[GeminiSimulator, str, str]]:
    gemini, host = GeminiSimulator(api_key="k-test"), ImageHost()
    same = solid_image((200, 300), (200, 30, 40), stripes=4)
    street = Image.new("RGB", (400, 300), (128, 128, 128))
    street.paste(same, (0, 0))
    host.put("street.png", street)
    host.put("same.png", same)
    host.put("close.png", solid_image((200, 300), (180, 50, 60), stripes=4))
    host.put("far.png", solid_image((200, 300), (30, 60, 190)))
    with serve_asgi(gemini.app) as g_url, serve_asgi(host.app) as images:
        yield gemini, g_url, images


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    writer = env_writer(LlmRerankerSettings)
    # the images come from the loopback host, which production's image-fetch settings refuse
    writer.required = {**writer.required, **{k.upper(): v for k, v in LOOPBACK_IMAGE_FETCH.items()}}
    return writer


@pytest.fixture
def client(servers: tuple[GeminiSimulator, str, str], write_env: EnvWriter) -> Iterator[TestClient]:
    gemini, g_url, _ = servers
    gemini.clear()
    write_env({"GEMINI_API_KEY": "k-test", "GEMINI_BASE_URL": g_url, "HTTP_BACKOFF_BASE_S": "0.05"})
    with service_client(create(LlmRerankerSettings.load())) as c:
        yield c
    gemini.clear()


def candidates(images: str) -> list[dict[str, Any]]:
    return [
        {"sku_id": "FAR", "score": 0.9, "image_urls": [f"{images}/img/far.png"], "metadata": {"brand": "x"}},
        {"sku_id": "SAME", "score": 0.6, "image_urls": [f"{images}/img/same.png"]},
        {"sku_id": "CLOSE", "score": 0.5, "metadata": {"matched_image": f"{images}/img/close.png"}},
    ]


def test_tag(client: TestClient, servers: tuple[GeminiSimulator, str, str]) -> None:
    gemini, _, images = servers
    answer = client.post("/tag", json={"url": f"{images}/img/street.png#xywh=0,0,200,300"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == gemini.context_tags
    assert gemini.requests[-1] == ("generate", {"images": 1, "model": MODEL, "thinking_level": "minimal"})
    config = gemini.calls[-1]["json"]["generationConfig"]
    assert config == {"responseMimeType": "application/json", "thinkingConfig": {"thinkingLevel": "minimal"}}


def test_rerank_combines_visual_and_semantic(
    client: TestClient, servers: tuple[GeminiSimulator, str, str]
) -> None:
    gemini, _, images = servers
    crop = f"{images}/img/street.png#xywh=0,0,200,300"
    answer = client.post(
        "/rerank", json={"crop_url": crop, "candidates": candidates(images), "tags": {"color": "red"}}
    )
    assert answer.status_code == 200, answer.text
    ranked = answer.json()["ranked"]
    assert [r["sku_id"] for r in ranked] == ["SAME", "CLOSE", "FAR"]
    for r in ranked:
        assert r["score"] == pytest.approx(0.7 * r["visual"] + 0.3 * r["semantic"], abs=1e-4)
    assert ranked[0]["visual"] > 0.95 and ranked[-1]["visual"] < 0.3
    assert gemini.hits["generate"] == 3  # one call per candidate
    metrics = client.get("/metrics").text
    assert 'llm_reranker_latency_ms_count{endpoint="rerank"} 1.0' in metrics
    cost = [line for line in metrics.splitlines() if line.startswith("llm_reranker_cost_usd ")]
    assert cost and float(cost[0].split()[1]) > 0


def test_a_failed_candidate_keeps_its_retrieval_score(
    client: TestClient, servers: tuple[GeminiSimulator, str, str]
) -> None:
    gemini, _, images = servers
    crop = f"{images}/img/street.png"
    cands = candidates(images)
    cands[0]["image_urls"] = [f"{images}/img/none.png"]  # its catalog photo is gone
    answer = client.post("/rerank", json={"crop_url": crop, "candidates": cands})
    body = answer.json()
    far = next(r for r in body["ranked"] if r["sku_id"] == "FAR")
    assert far == {"sku_id": "FAR", "score": 0.9, "reranked": False}
    assert body["failed"] == 1 and "HTTP 404" in body["errors"][0]
    gemini.fault("generate", "down")
    down = client.post("/rerank", json={"crop_url": crop, "candidates": candidates(images)})
    assert down.status_code == 502 and "every rerank call failed" in down.json()["detail"]
    gemini.fault("generate", "malformed")
    bad = client.post("/tag", json={"url": crop})
    assert bad.status_code == 502 and "malformed JSON" in bad.json()["detail"]
    gemini.fault("generate", "503", times=1)  # UNAVAILABLE refuses the call: nothing billed, retried
    retried = client.post("/tag", json={"url": crop})
    assert retried.status_code == 200


def test_bad_input(client: TestClient, servers: tuple[GeminiSimulator, str, str]) -> None:
    _, _, images = servers
    answers = {
        "html": client.post("/tag", json={"url": f"{images}/img-html/x"}),
        "unreachable": client.post("/tag", json={"url": f"http://127.0.0.1:{free_port()}/x.png"}),
        "no_candidates_field": client.post("/rerank", json={"crop_url": f"{images}/img/street.png"}),
        "score": client.post(
            "/rerank",
            json={"crop_url": f"{images}/img/street.png", "candidates": [{"sku_id": "a", "score": 7}]},
        ),
    }
    assert {k: r.status_code for k, r in answers.items()} == {
        "html": 415,
        "unreachable": 422,
        "no_candidates_field": 422,
        "score": 422,
    }
    empty = client.post("/rerank", json={"crop_url": f"{images}/img/street.png", "candidates": []})
    assert empty.json() == {"ranked": [], "failed": 0}


def test_wrong_key_is_reported(servers: tuple[GeminiSimulator, str, str], write_env: EnvWriter) -> None:
    _, g_url, images = servers
    write_env({"GEMINI_API_KEY": "wrong", "GEMINI_BASE_URL": g_url})
    with service_client(create(LlmRerankerSettings.load())) as c:
        answer = c.post("/tag", json={"url": f"{images}/img/street.png"})
    # the real API answers a wrong key with 400 INVALID_ARGUMENT (API_KEY_INVALID), not 403
    assert answer.status_code == 502 and "HTTP 400" in answer.json()["detail"]
    assert "wrong" not in answer.text


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_gemini_429_with_retry_info_waits_as_asked(
    client: TestClient, servers: tuple[GeminiSimulator, str, str]
) -> None:
    """429 RESOURCE_EXHAUSTED refuses the call before anything is generated: the client waits the
    RetryInfo.retryDelay of the error body (1 s here, no Retry-After header) and tries once more."""
    gemini, _, images = servers
    gemini.retry_delay_s = 1.0
    gemini.fault("generate", "429", times=1)
    start = time.monotonic()
    answer = client.post("/tag", json={"url": f"{images}/img/street.png"})
    waited = time.monotonic() - start
    assert answer.status_code == 200, answer.text
    assert waited >= 1.0, waited
    assert gemini.hits["generate"] == 2


def test_a_daily_quota_is_not_waited_for(
    client: TestClient, servers: tuple[GeminiSimulator, str, str]
) -> None:
    gemini, _, images = servers
    gemini.fault("generate", "quota_daily")
    answer = client.post("/tag", json={"url": f"{images}/img/street.png"})
    assert answer.status_code == 502 and "HTTP 429" in answer.json()["detail"]
    assert gemini.hits["generate"] == 1


def test_a_lost_answer_is_not_sent_again(
    servers: tuple[GeminiSimulator, str, str], write_env: EnvWriter
) -> None:
    """generateContent is billed per generated token: a call whose answer did not arrive in time may
    have been billed, so it is not repeated (the call is not idempotent)."""
    gemini, g_url, images = servers
    gemini.clear()
    gemini.fault("generate", "timeout", delay_s=2.0)
    write_env({"GEMINI_API_KEY": "k-test", "GEMINI_BASE_URL": g_url, "GEMINI_READ_TIMEOUT_S": "0.3"})
    with service_client(create(LlmRerankerSettings.load())) as c:
        answer = c.post("/tag", json={"url": f"{images}/img/street.png"})
    assert answer.status_code == 502 and "after 1 attempt" in answer.json()["detail"]
    assert gemini.hits["generate"] == 1
    gemini.clear()


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-2.0-flash", "gemini-2.0-flash-lite"])
def test_a_shut_down_model_is_not_found(
    servers: tuple[GeminiSimulator, str, str], write_env: EnvWriter, model: str
) -> None:
    gemini, g_url, images = servers
    gemini.clear()
    write_env({"GEMINI_API_KEY": "k-test", "GEMINI_BASE_URL": g_url, "GEMINI_MODEL": model})
    with service_client(create(LlmRerankerSettings.load())) as c:
        answer = c.post("/tag", json={"url": f"{images}/img/street.png"})
    assert answer.status_code == 502 and "HTTP 404" in answer.json()["detail"]
    assert f"models/{model} is not found for API version v1beta" in answer.json()["detail"]
    assert gemini.hits["generate"] == 0  # rejected before any work


def test_thought_tokens_are_billed_as_output(
    servers: tuple[GeminiSimulator, str, str], write_env: EnvWriter
) -> None:
    """At a thinking level above minimal the answer carries usageMetadata.thoughtsTokenCount; the cost
    counts those tokens at the output price, on top of candidatesTokenCount."""
    gemini, g_url, images = servers
    gemini.clear()
    write_env({"GEMINI_API_KEY": "k-test", "GEMINI_BASE_URL": g_url, "GEMINI_THINKING_LEVEL": "medium"})
    settings = LlmRerankerSettings.load()
    with service_client(create(settings)) as c:
        assert c.post("/tag", json={"url": f"{images}/img/street.png"}).status_code == 200
        metrics = c.get("/metrics").text
    assert gemini.requests[-1][1]["thinking_level"] == "medium"
    thoughts = _metric(metrics, 'llm_reranker_tokens_total{kind="thoughts"}')
    output = _metric(metrics, 'llm_reranker_tokens_total{kind="output"}')
    prompt = _metric(metrics, 'llm_reranker_tokens_total{kind="input"}')
    assert thoughts == 256 and output > thoughts
    expected = (
        prompt * settings.gemini_input_usd_per_mtok + output * settings.gemini_output_usd_per_mtok
    ) / 1e6
    assert _metric(metrics, "llm_reranker_cost_usd ") == pytest.approx(expected)
    gemini.clear()


def test_health_and_metrics(write_env: EnvWriter) -> None:
    write_env()
    assert_health_ok(create(LlmRerankerSettings.load()), "llm_reranker", [])


def test_entry_point_serves_and_logs_json(write_env: EnvWriter) -> None:
    assert_entry_point("llm_reranker", write_env)
