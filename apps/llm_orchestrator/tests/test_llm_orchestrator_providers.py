"""The four chat LLM clients against the loopback DialogueSimulator: each sends exactly the documented
streamed request (tests/contracts/*.json, each citing its source) and parses the documented stream;
usage is priced; every fault (429, 5xx, 529, mid-stream overloaded_error, malformed JSON, a stream cut
before its end marker, no answer, a slow first byte, a slow but steady stream) becomes the
documented outcome; the simulator refuses what the real service refuses."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from llm_orchestrator.providers.base import (
    ChatMessage,
    LLMProviderError,
    LLMRequest,
    LLMResult,
    StreamedLLMClient,
    cost_usd,
)
from llm_orchestrator.providers.claude import ClaudeClient
from llm_orchestrator.providers.deepseek import DeepSeekClient
from llm_orchestrator.providers.gemini import GeminiClient
from llm_orchestrator.providers.qwen import QwenClient
from llm_orchestrator.providers.settings import ProviderSettings
from unde_testkit.dialogue_simulators import DialogueSimulator
from unde_testkit.testing import LoopbackServer

CONTRACTS = Path(__file__).parent / "contracts"
KEYS = {"deepseek": "ds-key", "qwen": "qw-key", "gemini": "gm-key", "claude": "cl-key", "cohere": "co-key"}
FIXTURES = {
    "deepseek": "deepseek_chat_stream.json",
    "qwen": "qwen_chat_stream.json",
    "gemini": "gemini_stream_generate_content.json",
    "claude": "claude_messages_stream.json",
}
LLMS = list(FIXTURES)
PRICES = {"deepseek": (0.30, 1.20), "qwen": (0.40, 1.20), "gemini": (0.75, 3.75), "claude": (2.0, 10.0)}


def load(name: str) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in json.loads((CONTRACTS / name).read_text())}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[DialogueSimulator, dict[str, str]]]:
    sim = DialogueSimulator(keys=KEYS)
    with LoopbackServer(sim.app) as server:
        yield sim, sim.base_urls(server.url)


@pytest.fixture
def sim(served: tuple[DialogueSimulator, dict[str, str]]) -> Iterator[DialogueSimulator]:
    served[0].reset()
    yield served[0]
    served[0].reset()


def make(
    provider: str, urls: dict[str, str], *, model: str | None = None, key: str | None = None
) -> StreamedLLMClient:
    secret = SecretStr(key if key is not None else KEYS[provider])
    p_in, p_out = PRICES[provider]
    if provider == "deepseek":
        return DeepSeekClient(
            urls["deepseek"],
            secret,
            model or "deepseek-v4-flash",
            price_in_per_1m=p_in,
            price_out_per_1m=p_out,
        )
    if provider == "qwen":
        return QwenClient(
            urls["qwen"], secret, model or "qwen-plus", price_in_per_1m=p_in, price_out_per_1m=p_out
        )
    if provider == "gemini":
        return GeminiClient(
            urls["gemini"], secret, model or "gemini-3.8-flash", price_in_per_1m=p_in, price_out_per_1m=p_out
        )
    return ClaudeClient(
        urls["claude"], secret, model or "claude-sonnet-5-5", price_in_per_1m=p_in, price_out_per_1m=p_out
    )


def request_of(fixture: dict[str, Any]) -> LLMRequest:
    return LLMRequest(
        system="You are UNDE, a warm fashion companion.",
        messages=[ChatMessage("user", "Which jacket goes with my grey chinos?")],
        max_tokens=512,
        temperature=0.7,
    )


def run(
    client: StreamedLLMClient, request: LLMRequest, *, timeout_s: float = 5.0, first_byte_s: float = 2.0
) -> LLMResult:
    async def call() -> LLMResult:
        try:
            return await client.complete(request, timeout_s=timeout_s, first_byte_timeout_s=first_byte_s)
        finally:
            await client.aclose()

    return asyncio.run(call())


def fails(client: StreamedLLMClient, **kwargs: float) -> LLMProviderError:
    with pytest.raises(LLMProviderError) as info:
        run(client, request_of({}), **kwargs)
    return info.value


PREFIX = {
    "deepseek": "/deepseek",
    "qwen": "/qwen/compatible-mode/v1",
    "gemini": "/gemini",
    "claude": "/claude",
}


def test_every_fixture_names_its_source() -> None:
    for name in [*FIXTURES.values(), "cohere_embed.json", "intelistyle_recommendations.json"]:
        for fixture in load(name).values():
            assert fixture["source"] and fixture["response"], (name, fixture["name"])


def test_the_fixture_models_are_the_settings_defaults() -> None:
    fields = ProviderSettings.model_fields
    assert (
        load(FIXTURES["deepseek"])["stream"]["request"]["json"]["model"] == fields["deepseek_model"].default
    )
    assert load(FIXTURES["qwen"])["stream"]["request"]["json"]["model"] == fields["qwen_model"].default
    assert load(FIXTURES["claude"])["stream"]["request"]["json"]["model"] == fields["claude_model"].default
    path = load(FIXTURES["gemini"])["stream"]["request"]["path"]
    assert path == f"/v1beta/models/{fields['gemini_model'].default}:streamGenerateContent"


@pytest.mark.parametrize("provider", LLMS)
def test_the_client_sends_the_documented_request_and_parses_the_documented_stream(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator, provider: str
) -> None:
    fixture = load(FIXTURES[provider])["stream"]
    expected, answer = fixture["request"], fixture["response"]
    sim.answer_next(provider, answer["status"], "".join(answer["sse"]), media_type=answer["content_type"])
    result = run(make(provider, served[1]), request_of(fixture))

    sent = sim.calls_of(provider)[-1]
    assert sent["method"] == expected["method"]
    assert sent["path"] == PREFIX[provider] + expected["path"]
    assert sent["query"] == expected["query"]
    assert sent["json"] == expected["json"]
    headers = {k: v for k, v in sent["headers"].items() if not (k == "accept" and v == "*/*")}
    assert headers == expected["headers"]
    parsed = fixture["parsed"]
    assert (result.text, result.input_tokens, result.output_tokens) == (
        parsed["text"],
        parsed["input_tokens"],
        parsed["output_tokens"],
    )
    assert result.provider == provider and result.model == make(provider, served[1]).model
    assert result.cost_usd == pytest.approx(
        cost_usd(result.input_tokens, result.output_tokens, *PRICES[provider])
    )
    assert 0 <= result.first_byte_ms <= result.total_ms


def test_cost_is_usage_times_the_price_per_million() -> None:
    assert cost_usd(1_000_000, 0, 2.0, 10.0) == pytest.approx(2.0)
    assert cost_usd(31, 9, 0.30, 1.20) == pytest.approx((31 * 0.30 + 9 * 1.20) / 1e6)


def test_claude_and_gemini_are_never_sent_a_temperature(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator
) -> None:
    """Claude Sonnet 5.5 refuses sampling parameters (the simulator answers 400 like the API);
    Google tunes Gemini 3 for its default."""
    for provider in ("claude", "gemini"):
        run(make(provider, served[1]), request_of({}))
        body = sim.calls_of(provider)[-1]["json"]
        assert "temperature" not in body and "temperature" not in body.get("generationConfig", {})
    run(make("deepseek", served[1]), request_of({}))
    assert sim.calls_of("deepseek")[-1]["json"]["temperature"] == 0.7


@pytest.mark.parametrize("provider", LLMS)
@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        ("error500", "server_error", 500),
        ("error503", "server_error", 503),
        ("rate_limited", "rate_limited", 429),
        ("malformed", "malformed", None),
        ("broken_stream", "malformed", None),
    ],
)
def test_faults_become_their_error_kind(
    served: tuple[DialogueSimulator, dict[str, str]],
    sim: DialogueSimulator,
    provider: str,
    fault: str,
    kind: str,
    status: int | None,
) -> None:
    sim.fault(provider, fault)
    error = fails(make(provider, served[1]))
    assert (error.provider, error.kind, error.status, error.retryable) == (provider, kind, status, True)


def test_a_429_names_the_providers_retry_hint(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator
) -> None:
    """Claude's retry-after(-ms) header and Gemini's google.rpc.RetryInfo reach the error text."""
    for provider in ("claude", "gemini", "qwen"):
        sim.fault(provider, "rate_limited", retry_after_s=2)
        assert "retry after 2s" in str(fails(make(provider, served[1])))


def test_claude_529_and_a_mid_stream_overloaded_error_are_overloaded(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator
) -> None:
    sim.fault("claude", "overloaded", times=1)
    first = fails(make("claude", served[1]))
    assert (first.kind, first.status, first.retryable) == ("overloaded", 529, True)
    sim.fault("claude", "midstream_overloaded", times=1)
    second = fails(make("claude", served[1]))
    assert (second.kind, second.status) == ("overloaded", None)
    fixture = load(FIXTURES["claude"])["overloaded_midstream"]["response"]
    sim.answer_next("claude", 200, "".join(fixture["sse"]), media_type="text/event-stream")
    assert fails(make("claude", served[1])).kind == "overloaded"


@pytest.mark.parametrize(
    ("provider", "retired", "status"),
    [
        ("deepseek", "deepseek-chat", 400),
        ("qwen", "qwen-7b-chat", 404),
        ("gemini", "gemini-2.0-flash", 404),
        ("claude", "claude-sonnet-4-20250514", 404),
    ],
)
def test_a_retired_model_or_a_wrong_key_is_a_config_error(
    served: tuple[DialogueSimulator, dict[str, str]],
    sim: DialogueSimulator,
    provider: str,
    retired: str,
    status: int,
) -> None:
    error = fails(make(provider, served[1], model=retired))
    assert (error.kind, error.status, error.retryable) == ("config", status, False)
    wrong = fails(make(provider, served[1], key="wrong"))
    assert wrong.kind == "config" and wrong.status in (400, 401)


def test_a_wrong_anthropic_version_is_refused(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator
) -> None:
    client = ClaudeClient(
        served[1]["claude"], SecretStr(KEYS["claude"]), "claude-sonnet-5-5", anthropic_version="2099-01-01"
    )
    error = fails(client)
    assert (error.kind, error.status) == ("config", 400) and "anthropic-version" in str(error)


@pytest.mark.parametrize("provider", LLMS)
def test_a_slow_first_byte_hits_the_first_byte_timeout_not_the_total(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator, provider: str
) -> None:
    """Headers (and Claude's message_start) come at once, the text only after 30 s: the call ends
    at the first-byte timeout, long before the total or the fault's delay."""
    sim.fault(provider, "slow_first_byte", delay_s=30)
    started = time.monotonic()
    error = fails(make(provider, served[1]), timeout_s=20, first_byte_s=0.3)
    assert error.kind == "first_byte_timeout"
    assert time.monotonic() - started < 10  # cut, not waited out


@pytest.mark.parametrize("provider", LLMS)
def test_no_answer_at_all_is_cut_at_the_first_byte_timeout(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator, provider: str
) -> None:
    sim.fault(provider, "timeout", delay_s=30)
    assert fails(make(provider, served[1]), timeout_s=20, first_byte_s=0.3).kind == "first_byte_timeout"


@pytest.mark.parametrize("provider", LLMS)
def test_a_slow_but_steady_stream_within_the_total_passes(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator, provider: str
) -> None:
    """Each chunk 0.1 s after the last: the first text is in time, the rest keeps coming, the
    whole answer arrives within the total although it takes longer than the first-byte timeout."""
    sim.fault(provider, "trickle", interval_s=0.1)
    result = run(make(provider, served[1]), request_of({}), timeout_s=15, first_byte_s=0.5)
    assert result.text == sim.answer[provider]


def test_a_trickle_past_the_total_is_a_timeout(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator
) -> None:
    sim.fault("deepseek", "trickle", interval_s=1.0)
    assert fails(make("deepseek", served[1]), timeout_s=3.5, first_byte_s=3.0).kind == "timeout"


def test_the_simulator_refuses_what_the_real_apis_refuse(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator
) -> None:
    urls = served[1]
    claude_headers = {"x-api-key": KEYS["claude"], "anthropic-version": "2023-06-01"}
    base = {"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client() as http:
        no_version = http.post(
            urls["claude"] + "/v1/messages", headers={"x-api-key": KEYS["claude"]}, json=base
        )
        assert no_version.status_code == 400 and no_version.json()["error"]["type"] == "invalid_request_error"
        sampling = http.post(
            urls["claude"] + "/v1/messages", headers=claude_headers, json={**base, "temperature": 0.5}
        )
        assert sampling.status_code == 400
        no_max = http.post(
            urls["claude"] + "/v1/messages", headers=claude_headers, json={**base, "max_tokens": None}
        )
        assert no_max.status_code == 400
        no_key = http.post(urls["claude"] + "/v1/messages", json=base)
        assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
        retired = load(FIXTURES["deepseek"])["retired_model"]
        answer = http.post(
            urls["deepseek"] + "/chat/completions",
            headers={"authorization": "Bearer ds-key"},
            json={"model": retired["request"]["model"], "messages": [{"role": "user", "content": "hi"}]},
        )
        assert (answer.status_code, answer.json()) == (
            retired["response"]["status"],
            retired["response"]["json"],
        )
        thinking = http.post(
            urls["deepseek"] + "/chat/completions",
            headers={"authorization": "Bearer ds-key"},
            json={
                "model": "deepseek-v4-flash",
                "messages": [{"role": "user", "content": "hi"}],
                "thinking": "off",
            },
        )
        assert thinking.status_code == 400
        qwen = http.post(
            urls["qwen"] + "/chat/completions", headers={"authorization": "Bearer wrong"}, json=base
        )
        assert qwen.status_code == 401 and qwen.json()["error"]["code"] == "invalid_api_key"


def test_deepseek_sends_thinking_disabled_from_settings(
    served: tuple[DialogueSimulator, dict[str, str]], sim: DialogueSimulator
) -> None:
    assert ProviderSettings.model_fields["deepseek_thinking"].default == "disabled"
    run(make("deepseek", served[1]), request_of({}))
    assert sim.calls_of("deepseek")[-1]["json"]["thinking"] == {"type": "disabled"}
