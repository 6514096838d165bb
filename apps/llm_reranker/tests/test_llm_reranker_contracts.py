"""Contract fixtures of the Gemini API (tests/contracts/gemini_generate_content.json, each citing
its source): the real GeminiClient sends exactly the documented request and parses the documented
response; the strict simulator answers the documented error bodies."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_reranker.gemini import GeminiAnswer, GeminiClient
from unde_common.http import ProviderConfig, ProviderError, RetryPolicy
from unde_testkit.recognition_simulators import GeminiSimulator
from unde_testkit.recognition_testbed import serve_asgi

FIXTURES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "contracts" / "gemini_generate_content.json").read_text()
)
BY_NAME = {f["name"]: f for f in FIXTURES}


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[GeminiSimulator, str]]:
    gemini = GeminiSimulator(api_key="test-key", retry_delay_s=1.0)
    with serve_asgi(gemini.app) as url:
        yield gemini, url


def test_every_fixture_names_its_source() -> None:
    assert FIXTURES and all(f["source"] and f["request"] and f["response"] for f in FIXTURES)


def test_the_client_sends_the_documented_request_and_parses_the_documented_response(
    sim: tuple[GeminiSimulator, str],
) -> None:
    gemini, url = sim
    gemini.clear()
    fixture = BY_NAME["generate_json"]
    request, response = fixture["request"], fixture["response"]
    parts = request["json"]["contents"][0]["parts"]
    prompt, image = parts[0]["text"], base64.b64decode(parts[1]["inline_data"]["data"])
    model = request["path"].split("/")[-1].split(":")[0]
    gemini.answer_next(response["status"], response["json"])

    async def call() -> GeminiAnswer:
        client = GeminiClient(
            ProviderConfig(name="gemini", base_url=url, retry=RetryPolicy(max_attempts=1)),
            api_key=request["headers"]["x-goog-api-key"],
            model=model,
        )
        try:
            return await client.generate_json(prompt, [image])
        finally:
            await client.aclose()

    answer = asyncio.run(call())
    sent = gemini.calls[-1]
    assert {k: sent[k] for k in ("method", "path", "query", "json")} == {
        k: request[k] for k in ("method", "path", "query", "json")
    }
    assert sent["headers"] == request["headers"]
    assert answer == GeminiAnswer(**fixture["parsed"])


@pytest.mark.parametrize(
    "name",
    [
        "shut_down_model",
        "rate_limited_with_retry_info",
        "wrong_api_key",
        "thinking_level_and_budget_together",
    ],
)
def test_the_simulator_answers_the_documented_errors(sim: tuple[GeminiSimulator, str], name: str) -> None:
    gemini, url = sim
    gemini.clear()
    fixture = BY_NAME[name]
    request, response = fixture["request"], fixture["response"]
    if name == "rate_limited_with_retry_info":
        gemini.fault("generate", "429", times=1)
    answer = httpx.request(
        request["method"], url + request["path"], headers=request["headers"], json=request["json"]
    )
    assert (answer.status_code, answer.json()) == (response["status"], response["json"])
    assert "retry-after" not in answer.headers  # Gemini's hint is in the body only
    gemini.clear()


def test_the_client_reports_a_documented_error(sim: tuple[GeminiSimulator, str]) -> None:
    gemini, url = sim
    gemini.clear()

    async def call() -> None:
        client = GeminiClient(
            ProviderConfig(name="gemini", base_url=url), api_key="test-key", model="gemini-2.5-flash"
        )
        try:
            await client.generate_json("hi", [])
        finally:
            await client.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(call())
    assert info.value.status == 404 and info.value.attempts == 1
    assert BY_NAME["shut_down_model"]["response"]["json"]["error"]["message"] in (info.value.body or "")
