"""Contract fixtures of the two mood LLMs (tests/contracts/*.json, each citing its source): the real
DeepSeekClient and GeminiClient send exactly the documented request and parse the documented
response; the strict simulator answers the documented error bodies. ``<<prompts/mood_system.txt>>``
in a fixture stands for the packaged system prompt."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from mood_agent.clients import DeepSeekClient, GeminiClient, MoodLLM, system_prompt
from mood_agent.lexicon import Classification
from mood_agent.settings import MoodAgentSettings
from unde_testkit.llm_simulators import LLMSimulator
from unde_testkit.testing import LoopbackServer

CONTRACTS = Path(__file__).parent / "contracts"
PROMPT = "<<prompts/mood_system.txt>>"


def _load(name: str) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in json.loads((CONTRACTS / name).read_text())}


DEEPSEEK = _load("deepseek_chat_completions.json")
GEMINI = _load("gemini_generate_content.json")


def _with_prompt(value: Any) -> Any:
    """The fixture with the system prompt placeholder replaced by the packaged prompt."""
    return json.loads(json.dumps(value).replace(json.dumps(PROMPT)[1:-1], json.dumps(system_prompt())[1:-1]))


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[LLMSimulator, str]]:
    simulator = LLMSimulator({"deepseek": {}, "gemini": {}})
    with LoopbackServer(simulator.app) as server:
        yield simulator, server.url


def test_every_fixture_names_its_source() -> None:
    for fixture in [*DEEPSEEK.values(), *GEMINI.values()]:
        assert fixture["source"] and fixture["request"] and fixture["response"], fixture["name"]


def test_the_fixture_models_are_the_settings_defaults() -> None:
    fields = MoodAgentSettings.model_fields
    assert DEEPSEEK["classify"]["request"]["json"]["model"] == fields["mood_llm_model"].default
    assert GEMINI["classify"]["request"]["path"] == (
        f"/v1beta/models/{fields['mood_fallback_model'].default}:generateContent"
    )


@pytest.mark.parametrize("provider", ["deepseek", "gemini"])
def test_the_client_sends_the_documented_request_and_parses_the_documented_response(
    sim: tuple[LLMSimulator, str], provider: str
) -> None:
    simulator, url = sim
    fixture = _with_prompt((DEEPSEEK if provider == "deepseek" else GEMINI)["classify"])
    request, response = fixture["request"], fixture["response"]
    simulator.calls.clear()
    simulator.mode = {"deepseek": "ok", "gemini": "ok"}
    simulator.answer_next(provider, response["status"], response["json"])
    if provider == "deepseek":
        key = request["headers"]["authorization"].removeprefix("Bearer ")
        llm: MoodLLM = DeepSeekClient(url, SecretStr(key), request["json"]["model"])
        text = request["json"]["messages"][1]["content"]
    else:
        model = request["path"].split("/")[-1].split(":")[0]
        llm = GeminiClient(url, SecretStr(request["headers"]["x-goog-api-key"]), model)
        text = request["json"]["contents"][0]["parts"][0]["text"]

    async def call() -> Classification:
        try:
            return await llm.classify(text, 2.0)
        finally:
            await llm.aclose()

    result = asyncio.run(call())
    sent = simulator.calls[-1]
    for key in ("method", "path", "query", "headers", "json"):
        assert sent[key] == request[key], key
    assert dataclasses.asdict(result) == fixture["parsed"]


@pytest.mark.parametrize(
    ("provider", "name"),
    [("deepseek", "retired_model"), ("deepseek", "no_key"), ("gemini", "shut_down_model")],
)
def test_the_simulator_answers_the_documented_errors(
    sim: tuple[LLMSimulator, str], provider: str, name: str
) -> None:
    simulator, url = sim
    simulator.mode = {"deepseek": "ok", "gemini": "ok"}
    fixture = (DEEPSEEK if provider == "deepseek" else GEMINI)[name]
    request, response = fixture["request"], fixture["response"]
    answer = httpx.request(
        request["method"], url + request["path"], headers=request["headers"], json=request["json"]
    )
    assert (answer.status_code, answer.json()) == (response["status"], response["json"])
