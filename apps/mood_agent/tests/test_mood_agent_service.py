"""POST /analyze against strict DeepSeek and Gemini simulators on loopback (real HTTP; retired model
ids rejected with the real error bodies, thinking must be off; injected faults: 5xx, 429, timeouts,
malformed bodies) and a real Redis for the previous frame."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from mood_agent.app import create
from mood_agent.classifier import HedgedClassifier, LoopLag
from mood_agent.clients import DeepSeekClient
from mood_agent.settings import MoodAgentSettings
from unde_testkit.llm_simulators import LLMSimulator
from unde_testkit.service_auth import ServiceTokenAuth, service_client
from unde_testkit.testing import EnvWriter, EnvWriterFactory, LoopbackServer, free_port

ANSWER = {
    "valence": 0.8,
    "arousal": 0.6,
    "dominance": 0.55,
    "frustration": 0.05,
    "urgency": 0.2,
    "confidence": 0.9,
    "fatigue": 0.1,
    "topic": "shoes",
    "thread_break": False,
}


DEFAULT_MODEL = MoodAgentSettings.model_fields["mood_llm_model"].default
DEFAULT_FALLBACK = MoodAgentSettings.model_fields["mood_fallback_model"].default


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[LLMSimulator, str]]:
    simulator = LLMSimulator({"deepseek": dict(ANSWER), "gemini": {**ANSWER, "valence": 0.3}})
    with LoopbackServer(simulator.app) as server:
        yield simulator, server.url


@pytest.fixture(scope="module")
def app_client(sim: tuple[LLMSimulator, str], redis_url: str) -> Iterator[TestClient]:
    settings = MoodAgentSettings.load(
        mood_llm_api_key="ds-key",
        mood_fallback_api_key="gm-key",
        deepseek_base_url=sim[1],
        gemini_base_url=sim[1],
        redis_url=redis_url.rsplit("/", 1)[0] + "/9",
        mood_llm_budget_ms=600,
        mood_hedge_after_ms=150,
        mood_deadline_ms=1000,
    )
    with service_client(create(settings)) as c:
        yield c


@pytest.fixture
def client(app_client: TestClient, sim: tuple[LLMSimulator, str]) -> TestClient:
    sim[0].mode = {"deepseek": "ok", "gemini": "ok"}
    sim[0].requests.clear()
    return app_client


def analyze(c: TestClient, text: str, **extra: Any) -> dict[str, Any]:
    r = c.post("/analyze", json={"user_id": extra.pop("user_id", str(uuid.uuid4())), "text": text, **extra})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_primary_deepseek_answers(client: TestClient, sim: tuple[LLMSimulator, str]) -> None:
    out = analyze(client, "I love these sneakers")
    assert out["analysis"]["classifier"] == "deepseek" and out["analysis"]["provider_errors"] == []
    frame = out["mood_frame"]
    assert frame["emotion"] == {"valence": 0.8, "arousal": 0.6, "dominance": 0.55}
    assert frame["signals"] == {"frustration": 0.05, "urgency": 0.2, "confidence": 0.9, "fatigue": 0.1}
    req = sim[0].requests[0]
    assert req["auth"] == "Bearer ds-key" and req["body"]["model"] == DEFAULT_MODEL
    assert req["body"]["thinking"] == {"type": "disabled"}
    assert req["body"]["response_format"] == {"type": "json_object"}
    assert req["body"]["messages"][1] == {"role": "user", "content": "I love these sneakers"}


@pytest.mark.parametrize("fault", ["error500", "rate_limited", "malformed", "garbage_answer", "slow"])
def test_gemini_answers_when_deepseek_fails(
    client: TestClient, sim: tuple[LLMSimulator, str], fault: str
) -> None:
    sim[0].mode["deepseek"] = fault
    out = analyze(client, "hmm")
    assert out["analysis"]["classifier"] == "gemini", out["analysis"]
    assert out["mood_frame"]["emotion"]["valence"] == 0.3
    gemini = next(r for r in sim[0].requests if r["provider"] == "gemini")
    assert (
        gemini["key"] == "gm-key" and gemini["path"] == f"/v1beta/models/{DEFAULT_FALLBACK}:generateContent"
    )
    assert gemini["body"]["generationConfig"]["responseMimeType"] == "application/json"
    assert gemini["body"]["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "minimal"}


@pytest.mark.parametrize(
    ("ds", "gm"), [("slow", "slow"), ("error500", "malformed"), ("rate_limited", "garbage_answer")]
)
def test_local_classifier_answers_when_both_fail(
    client: TestClient, sim: tuple[LLMSimulator, str], ds: str, gm: str
) -> None:
    sim[0].mode = {"deepseek": ds, "gemini": gm}
    out = analyze(client, "ugh, again not what I asked!!")
    assert out["analysis"]["classifier"] == "lexicon"
    assert len(out["analysis"]["provider_errors"]) == 2
    assert out["mood_frame"]["signals"]["frustration"] >= 0.6
    assert out["mood_frame"]["topic"]["action"] == "defuse"


def test_signal_mode_uses_only_the_local_classifier(
    client: TestClient, sim: tuple[LLMSimulator, str]
) -> None:
    out = analyze(client, "срочно нужны туфли, через час закрывается", mode="signal")
    assert out["analysis"]["classifier"] == "lexicon" and sim[0].requests == []
    assert out["mood_frame"]["signals"]["urgency"] >= 0.6


def test_previous_frame_smooths_and_detects_shift(client: TestClient) -> None:
    user = str(uuid.uuid4())
    first = analyze(client, "I love these sneakers", user_id=user)["mood_frame"]
    assert first["smoothed_baseline"] == {"valence": 0.8, "arousal": 0.6}
    second = analyze(client, "and a dress?", user_id=user, previous_mood_frame_id=first["mood_frame_id"])
    # same answer from the simulator, baseline unchanged; the topic label stays "shoes"
    assert second["mood_frame"]["smoothed_baseline"] == {"valence": 0.8, "arousal": 0.6}
    assert second["mood_frame"]["topic"]["shift_detected"] is False


def test_voice_text_mismatch(client: TestClient) -> None:
    out = analyze(client, "great, just great", prosody={"valence_hint": 0.1, "energy": 0.2})
    assert out["analysis"]["voice_text_mismatch"] is True
    assert out["mood_frame"]["style_params"]["ask_clarification"] is True
    assert out["mood_frame"]["emotion"]["valence"] == pytest.approx(0.38)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"text": "hi"}, ["body", "user_id"]),
        ({"user_id": "x", "text": "hi"}, ["body", "user_id"]),
        ({"user_id": str(uuid.uuid4())}, ["body", "text"]),
        ({"user_id": str(uuid.uuid4()), "text": ""}, ["body", "text"]),
        ({"user_id": str(uuid.uuid4()), "text": 5}, ["body", "text"]),
        (
            {"user_id": str(uuid.uuid4()), "text": "a", "prosody": {"valence_hint": 3}},
            ["body", "prosody", "valence_hint"],
        ),
        (
            {"user_id": str(uuid.uuid4()), "text": "a", "previous_mood_frame_id": 12},
            ["body", "previous_mood_frame_id"],
        ),
    ],
)
def test_bad_input_is_422_naming_the_field(client: TestClient, body: dict[str, Any], loc: list[str]) -> None:
    r = client.post("/analyze", json=body)
    assert r.status_code == 422
    assert loc in [d["loc"] for d in r.json()["detail"]]


def test_redis_down_still_answers(env_writer: EnvWriterFactory, sim: tuple[LLMSimulator, str]) -> None:
    writer: EnvWriter = env_writer(MoodAgentSettings)
    writer(
        {
            "MOOD_LLM_API_KEY": "k",
            "MOOD_FALLBACK_API_KEY": "k",
            "MOOD_LLM_ENABLED": "false",
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/9",
        }
    )
    with service_client(create(MoodAgentSettings.load())) as c:
        out = analyze(c, "thanks, perfect")
    assert out["analysis"]["classifier"] == "lexicon"
    assert any(e.startswith("redis") for e in out["analysis"]["provider_errors"])
    assert out["mood_frame"]["emotion"]["valence"] > 0.7


def _settings(sim: tuple[LLMSimulator, str], redis_url: str, **extra: Any) -> MoodAgentSettings:
    return MoodAgentSettings.load(
        mood_llm_api_key="k",
        mood_fallback_api_key="k",
        deepseek_base_url=sim[1],
        gemini_base_url=sim[1],
        redis_url=redis_url.rsplit("/", 1)[0] + "/9",
        **extra,
    )


def test_one_deadline_bounds_both_llms(
    client: TestClient, sim: tuple[LLMSimulator, str], redis_url: str
) -> None:
    """Defaults (deadline 180 ms, reserve 15 ms): both providers hang, and what the LLMs were given
    is what was left of the request's deadline — never the configured 600 ms budget."""
    sim[0].mode = {"deepseek": "slow", "gemini": "slow"}
    with service_client(
        create(_settings(sim, redis_url, mood_llm_budget_ms=600, mood_hedge_after_ms=60))
    ) as c:
        out = analyze(c, "ugh, again not what I asked!!")
    assert out["analysis"]["classifier"] == "lexicon"
    errors = out["analysis"]["provider_errors"]
    budgets = [int(e.rsplit("within ", 1)[1].split(" ms")[0]) for e in errors if "no answer within" in e]
    assert len(budgets) == 2 and all(b <= 165 for b in budgets), errors
    assert {r["provider"] for r in sim[0].requests} == {"deepseek", "gemini"}


def test_llm_calls_in_flight_are_capped_and_the_rest_shed(
    client: TestClient, sim: tuple[LLMSimulator, str], redis_url: str
) -> None:
    """One LLM call may be in flight: a second request arriving meanwhile does not queue behind it
    (and asks no provider) but is answered by the lexicon at once, saying why."""
    sim[0].mode = {"deepseek": "slow", "gemini": "slow"}
    app = create(
        _settings(
            sim,
            redis_url,
            mood_llm_max_inflight=1,
            mood_deadline_ms=1500,
            mood_llm_budget_ms=1000,
            mood_hedge_after_ms=5000,
        )
    )

    async def run() -> list[dict[str, Any]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://mood", auth=ServiceTokenAuth()
            ) as c:

                async def post(delay: float, text: str) -> dict[str, Any]:
                    await asyncio.sleep(delay)
                    r = await c.post("/analyze", json={"user_id": str(uuid.uuid4()), "text": text})
                    assert r.status_code == 200, r.text
                    data: dict[str, Any] = r.json()
                    return data

                return list(await asyncio.gather(post(0, "first"), post(0.3, "thanks, perfect")))

    first, second = asyncio.run(run())
    assert first["analysis"]["classifier"] == "lexicon"
    assert any("no answer within" in e for e in first["analysis"]["provider_errors"])
    assert second["analysis"]["classifier"] == "lexicon"
    assert second["analysis"]["provider_errors"] == ["shed: 1 LLM calls in flight"]
    assert second["mood_frame"]["emotion"]["valence"] > 0.7
    assert [r["body"]["messages"][1]["content"] for r in sim[0].requests] == ["first"]


def test_loop_lag_is_measured_and_sheds_llm_calls(sim: tuple[LLMSimulator, str]) -> None:
    """A worker whose event loop is held up (here: 150 ms of blocking work, as a CPU-starved
    process would be) starts no LLM call until it has caught up."""
    sim[0].mode = {"deepseek": "ok", "gemini": "ok"}
    sim[0].requests.clear()

    async def run() -> tuple[float, list[str], str, float]:
        lag = LoopLag()
        monitor = asyncio.create_task(lag.run())
        llm = DeepSeekClient(sim[1], SecretStr("k"), DEFAULT_MODEL, timeout_s=1.0)
        classifier = HedgedClassifier([llm], budget_s=1.0, hedge_after_s=1.0, lag=lag, shed_lag_s=0.02)
        try:
            await asyncio.sleep(0.05)
            time.sleep(0.15)  # noqa: ASYNC251 (the point: block the loop)
            await asyncio.sleep(0.01)
            seen = lag.lag_s
            shed = await classifier.classify("thanks, perfect")
            deadline = time.monotonic() + 5
            while lag.lag_s > 0.02:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            ok = await classifier.classify("thanks, perfect")
            return seen, shed.errors, ok.source, lag.lag_s
        finally:
            monitor.cancel()
            await llm.aclose()

    seen, errors, source, after = asyncio.run(run())
    assert seen >= 0.1, seen
    assert len(errors) == 1 and errors[0].startswith("shed: event loop") and errors[0].endswith("ms behind")
    assert source == "deepseek" and after <= 0.02
    assert len(sim[0].requests) == 1


def test_retired_model_ids_are_refused_with_the_real_errors(
    client: TestClient, sim: tuple[LLMSimulator, str], redis_url: str
) -> None:
    """deepseek-chat and gemini-2.0-flash-lite (the old defaults) are gone: DeepSeek answers 400
    "Model Not Exist", Gemini 404 NOT_FOUND; the lexicon answers and both errors are listed."""
    settings = _settings(
        sim,
        redis_url,
        mood_llm_model="deepseek-chat",
        mood_fallback_model="gemini-2.0-flash-lite",
        mood_hedge_after_ms=0,
        mood_llm_budget_ms=600,
        mood_deadline_ms=1000,
    )
    with service_client(create(settings)) as c:
        out = analyze(c, "thanks, perfect")
    assert out["analysis"]["classifier"] == "lexicon"
    errors = " | ".join(out["analysis"]["provider_errors"])
    assert "HTTP 400" in errors and "HTTP 404" in errors, errors


def test_thinking_left_on_would_miss_the_budget(sim: tuple[LLMSimulator, str]) -> None:
    """What disabling thinking buys: the same call with DeepSeek's default (thinking on) answers
    only after the model has reasoned, past a 150 ms budget."""

    async def run() -> tuple[float, float]:
        async with httpx.AsyncClient(base_url=sim[1], timeout=5) as c:
            body = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "json please"}]}
            headers = {"Authorization": "Bearer k"}
            start = time.perf_counter()
            thinking = await c.post("/chat/completions", json=body, headers=headers)
            mid = time.perf_counter()
            off = await c.post(
                "/chat/completions", json={**body, "thinking": {"type": "disabled"}}, headers=headers
            )
            end = time.perf_counter()
        assert "reasoning_content" in thinking.json()["choices"][0]["message"]
        assert "reasoning_content" not in off.json()["choices"][0]["message"]
        return mid - start, end - mid

    sim[0].mode = {"deepseek": "ok", "gemini": "ok"}
    with_thinking, without = asyncio.run(run())
    assert with_thinking >= 0.15 > without
