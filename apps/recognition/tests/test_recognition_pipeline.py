"""The recognition pipeline v5.1 end to end on real servers: PostgreSQL + pgvector (migrated with
the project's migrations), Redis, the embedder with an ONNX model, ximilar-gw and llm-reranker as
HTTP services, Ximilar and Gemini simulators with fault injection, and a real Celery worker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from recognition.pipeline import Pipeline
from recognition.settings import RecognitionSettings
from unde_common.db import PoolConfig, create_pool
from unde_testkit.apptests import recognition_pipeline
from unde_testkit.recognition_testbed import Stack, recognition_bed
from unde_testkit.service_auth import ServiceTokenAuth
from unde_testkit.testing import PostgresHandle, free_port, stop_process


@pytest.fixture(scope="module")
def stack(pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with recognition_bed(pg.dsn, redis_url, tmp_path_factory.mktemp("bed")) as bed:
        yield bed


@pytest.fixture
def sims(stack: Stack) -> Iterator[Stack]:
    stack.ximilar.clear()
    stack.gemini.clear()
    yield stack
    stack.ximilar.clear()
    stack.gemini.clear()


@pytest.fixture
def pipeline(stack: Stack) -> Iterator[Callable[..., Pipeline]]:
    with contextlib.ExitStack() as made:

        def make(gateway: str | None = None, **overrides: Any) -> Pipeline:
            bed_pipeline = recognition_pipeline(stack, app_name="recognition", gateway=gateway, **overrides)
            return made.enter_context(bed_pipeline)

        yield make


def row(stack: Stack, request_id: str) -> dict[str, Any]:
    with psycopg.connect(stack.main_dsn) as conn:
        cur = conn.execute("SELECT * FROM recognition_requests WHERE id = %s", (request_id,))
        names = [d.name for d in cur.description or []]
        found = cur.fetchone()
    assert found is not None, request_id
    return dict(zip(names, found, strict=True))


def bands(result: dict[str, Any]) -> list[str]:
    return [item["band"] for item in result["items"]]


def test_photo_yields_exact_similar_and_style_results(sims: Stack, pipeline: Callable[..., Pipeline]) -> None:
    result = pipeline().run(sims.photo_url, str(uuid.uuid4()))
    assert result["status"] == "completed", result
    assert bands(result) == ["exact", "similar", "style"]
    exact, similar, style = result["items"]
    assert [m["sku_id"] for m in exact["matches"]] == ["EXACT-1"]
    assert exact["matches"][0]["availability"][0]["store"] == "Zara Dostyk Plaza"
    assert exact["top_score"] > 0.85
    assert similar["matches"][0]["sku_id"] == "SIM-A"
    assert 3 <= len(similar["matches"]) <= 5
    assert all(m["match_type"] == "similar" for m in similar["matches"])
    assert "GONE-1" not in {m["sku_id"] for m in similar["matches"]}  # stale availability filtered out
    assert style["matches"][0]["sku_id"] == "TOP-BLACK"  # SQL over the catalog: Tops + black
    assert style["tags"]["color"] == "black" and style["tags"]["style"] == "streetwear"
    # one row with per-step timings and results
    saved = row(sims, result["request_id"])
    assert saved["status"] == "completed" and saved["items_detected"] == 3 and saved["items_matched"] == 3
    assert set(saved["step_timings_ms"]) == {"detect", "retrieve", "availability", "tag", "rerank"}
    assert {s["status"] for s in saved["step_results"].values()} <= {"ok", "degraded"}
    assert saved["search_backend"] == "conditional"
    assert saved["detection_time_ms"] is not None and saved["rerank_time_ms"] is not None
    assert saved["candidates_after_availability"] > 0
    assert saved["used_ximilar_tagging"] is True  # on_demand: the style item was unsure
    assert [i["band"] for i in saved["final_matches"]] == ["exact", "similar", "style"]


def test_detection_is_published_before_the_rest(sims: Stack, pipeline: Callable[..., Pipeline]) -> None:
    request_id = str(uuid.uuid4())
    client = redis.Redis.from_url(sims.redis_url)
    sub = client.pubsub()  # type: ignore[no-untyped-call]
    sub.subscribe(f"recognition:progress:{request_id}")
    sub.get_message(timeout=1)  # the subscribe confirmation
    pipeline().run(sims.photo_url, None, request_id)
    messages = []
    while (msg := sub.get_message(timeout=1)) is not None:
        if msg["type"] == "message":
            messages.append(json.loads(msg["data"]))
    assert [m["step"] for m in messages] == ["detect", "done"]
    assert len(messages[0]["items"]) == 3
    kept = json.loads(client.get(f"recognition:detection:{request_id}") or b"{}")
    assert kept["items"] == messages[0]["items"]


def test_emergency_rollback_is_ximilar_only(sims: Stack, pipeline: Callable[..., Pipeline]) -> None:
    gateway = sims.gateway(search_backend="ximilar")
    result = pipeline(gateway, tagging_mode="always").run(sims.photo_url)
    assert result["status"] == "completed"
    assert bands(result) == ["exact", "similar", "style"]
    saved = row(sims, result["request_id"])
    assert saved["search_backend"] == "ximilar" and saved["used_ximilar_tagging"] is True
    assert sims.ximilar.hits["search"] == 3
    # detect_tags already tagged the three items: no second (billed) tagging call per item
    assert sims.ximilar.hits["detect"] == 1 and sims.ximilar.hits["tag"] == 0
    assert result["steps"]["tag"]["ximilar_from_detect"] == 3


def test_an_item_without_detection_tags_is_tagged_once(
    sims: Stack, pipeline: Callable[..., Pipeline]
) -> None:
    sims.ximilar.fault("detect", "down")  # the whole photo becomes the one item: nothing tagged it yet
    result = pipeline(tagging_mode="always").run(sims.photo_url)
    assert result["status"] == "completed"
    assert sims.ximilar.hits["tag"] == 1 and result["steps"]["tag"]["ximilar_calls"] == 1
    assert row(sims, result["request_id"])["used_ximilar_tagging"] is True


def test_tagging_off_never_calls_ximilar_tag(sims: Stack, pipeline: Callable[..., Pipeline]) -> None:
    result = pipeline(tagging_mode="off").run(sims.photo_url)
    assert result["status"] == "completed"
    assert sims.ximilar.hits["tag"] == 0
    assert row(sims, result["request_id"])["used_ximilar_tagging"] is False


def test_gemini_down_still_completes_on_retrieval_scores(
    sims: Stack, pipeline: Callable[..., Pipeline]
) -> None:
    sims.gemini.fault("generate", "down")
    result = pipeline().run(sims.photo_url)
    assert result["status"] == "completed"
    assert result["items"][0]["band"] == "exact"  # pgvector cosine of the very same picture
    assert result["steps"]["rerank"]["status"] == "failed"
    assert result["steps"]["tag"]["status"] == "degraded"  # Ximilar tags still came
    assert all(item["matches"] for item in result["items"])


def test_ximilar_down_still_completes(sims: Stack, pipeline: Callable[..., Pipeline]) -> None:
    for route in ("detect", "tag", "search"):
        sims.ximilar.fault(route, "down")
    result = pipeline().run(sims.photo_url)
    assert result["status"] == "completed"
    assert result["steps"]["detect"]["status"] == "failed"
    assert result["steps"]["detect"]["fallback"] == "whole photo"
    assert len(result["items"]) == 1 and result["items"][0]["matches"]  # pgvector + rerank on the photo


def test_bad_photo_url_completes_as_failed_with_the_reason(
    sims: Stack, pipeline: Callable[..., Pipeline]
) -> None:
    p = pipeline()
    result = p.run(f"{sims.images}/img-html/page")
    assert result["status"] == "failed" and "text/html" in result["error"]
    saved = row(sims, result["request_id"])
    assert saved["status"] == "failed" and "not an image" in saved["error_message"]
    assert saved["step_results"]["detect"]["status"] == "failed"
    unreachable = p.run(f"http://127.0.0.1:{free_port()}/photo.jpg")
    assert unreachable["status"] == "failed" and "unreachable" in unreachable["error"]


def test_empty_detection_searches_the_whole_photo(sims: Stack, pipeline: Callable[..., Pipeline]) -> None:
    from unde_testkit.recognition_simulators import solid_image

    sims.host.put("plain.png", solid_image((300, 300), (200, 30, 40), stripes=4))
    result = pipeline().run(f"{sims.images}/img/plain.png")
    assert result["status"] == "completed"
    assert result["steps"]["detect"]["status"] == "empty"
    assert len(result["items"]) == 1 and result["items"][0]["matches"]


def test_too_few_available_candidates_trigger_one_requery(
    sims: Stack, pipeline: Callable[..., Pipeline]
) -> None:
    result = pipeline(min_candidates=40, retrieve_top_k=3).run(sims.photo_url)
    assert result["status"] == "completed"
    assert result["steps"]["availability"]["requeried_items"] == [0, 1, 2]
    # the re-query forces the Ximilar booster
    assert sims.ximilar.hits["search"] >= 3


def test_time_budget_bounds_the_request(sims: Stack, pipeline: Callable[..., Pipeline]) -> None:
    sims.gemini.fault("generate", "timeout", delay_s=30)
    start = time.monotonic()
    result = pipeline(llm_reranker_timeout_s=2.0).run(sims.photo_url, budget_s=6.0)
    assert time.monotonic() - start < 15
    assert result["status"] == "completed" and len(result["items"]) == 3


def test_celery_worker_runs_recognize_photo(stack: Stack, tmp_path: Path) -> None:
    """The real worker command (2 prefork processes, 30 s limit) on recognition_queue."""
    gateway = stack.gateway()
    env_file = tmp_path / ".env"
    metrics_port = free_port()
    env_file.write_text(
        "\n".join(
            f"{k}={v}"
            for k, v in {
                "XIMILAR_GW_URL": gateway,
                "LLM_RERANKER_URL": stack.reranker_url,
                "DATABASE_URL": stack.main_dsn,
                "STAGING_DB_URL": stack.staging_dsn,
                "CELERY_BROKER_URL": stack.redis_url,
                "CELERY_RESULT_BACKEND": stack.redis_url,
                "METRICS_PORT": str(metrics_port),
            }.items()
        )
    )
    env = {**os.environ, "UNDE_ENV_FILE": str(env_file), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "recognition.celery_app",
        "worker",
        "-Q",
        "recognition_queue",
    ]
    args += ["--concurrency", "2", "--without-mingle", "--without-gossip"]
    worker = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(worker.stdout or []), daemon=True).start()
    try:
        os.environ["UNDE_ENV_FILE"] = str(env_file)
        from recognition.celery_app import make_celery

        client = make_celery(RecognitionSettings.load())
        task = client.send_task("recognition.recognize_photo", args=[stack.photo_url, None])
        result = task.get(timeout=60)
        assert result["status"] == "completed", "".join(output)
        assert [i["band"] for i in result["items"]] == ["exact", "similar", "style"]
        import httpx

        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", auth=ServiceTokenAuth(), timeout=5).text
        for name in (
            "recognition_pipeline_duration_ms_count",
            "recognition_requests_total",
            "recognition_candidates_after_availability_count",
            "recognition_availability_filter_pass_rate",
            "recognition_used_ximilar_booster_rate",
            "recognition_used_ximilar_tagging_rate",
            "recognition_queue_size",
        ):
            assert name in text, name
        assert row(stack, result["request_id"])["status"] == "completed"
    finally:
        os.environ.pop("UNDE_ENV_FILE", None)
        stop_process(worker, timeout=20)


def test_production_db_down_still_answers(sims: Stack, pipeline: Callable[..., Pipeline]) -> None:
    p = pipeline()
    p.main_db.close()
    p.main_db = create_pool(
        f"postgresql://u@127.0.0.1:{free_port()}/x", app_name="recognition", config=PoolConfig(timeout_s=1.0)
    )
    result = p.run(sims.photo_url)
    assert result["status"] == "completed" and result["recorded"] is False
    assert all(item["matches"] for item in result["items"])  # style band: the retrieval candidates


def test_ximilar_gw_refuses_the_pipeline_without_its_service_token(
    sims: Stack, pipeline: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    """recognition's own client against a real ximilar-gw (and ximilar-gw's against the embedder):
    the bed's services accept the test callers only; a missing or wrong token is refused."""
    from unde_common.http import ProviderError
    from unde_testkit.service_auth import TEST_SERVICE_TOKENS

    gateway = sims.gateway(search_backend="pgvector")
    detected = pipeline(gateway).gw.post_json("/detect", json={"url": sims.photo_url})
    assert detected["items"], detected  # the token went with the call
    found = pipeline(gateway).gw.post_json("/search", json={"crop_url": sims.photo_url, "top_k": 3})
    assert found["candidates"] and found["degraded"] == [], found  # ximilar-gw → embedder: its token
    for token in (None, "not-a-known-token", TEST_SERVICE_TOKENS["monitoring"]):
        with pytest.raises(ProviderError) as refused:
            pipeline(gateway, service_token=token).gw.post_json("/detect", json={"url": sims.photo_url})
        assert refused.value.status == (403 if token == TEST_SERVICE_TOKENS["monitoring"] else 401)
    refusals = [r for r in caplog.records if r.msg == "service call refused"]
    assert [r.caller for r in refusals] == ["unknown", "unknown", "monitoring"]  # type: ignore[attr-defined]
    assert all("not-a-known-token" not in str(r.__dict__) for r in caplog.records)
