"""The LLM router against the loopback DialogueSimulator: the order comes from the settings, a 5xx
(or any failure) moves on to the next provider inside the one deadline, a configuration error is
logged at error level and still falls back, every attempt is recorded (and handed to the callback),
and when every provider is down AllProvidersFailed comes without waiting past the deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from llm_orchestrator.providers.base import ChatMessage, LLMRequest, cost_usd
from llm_orchestrator.providers.claude import ClaudeClient
from llm_orchestrator.providers.deepseek import DeepSeekClient
from llm_orchestrator.providers.gemini import GeminiClient
from llm_orchestrator.providers.qwen import QwenClient
from llm_orchestrator.providers.router import AllProvidersFailed, Attempt, LLMRouter, RouterResult
from llm_orchestrator.settings import LlmOrchestratorSettings
from unde_testkit.dialogue_simulators import DialogueSimulator
from unde_testkit.testing import EnvWriterFactory, LoopbackServer

REQUEST = LLMRequest("You are UNDE.", [ChatMessage("user", "hello")], max_tokens=200)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[DialogueSimulator, str]]:
    sim = DialogueSimulator()
    with LoopbackServer(sim.app) as server:
        yield sim, server.url


@pytest.fixture
def sim(served: tuple[DialogueSimulator, str]) -> Iterator[DialogueSimulator]:
    served[0].reset()
    yield served[0]
    served[0].reset()


def router(
    sim: DialogueSimulator,
    url: str,
    *,
    llm_timeout_s: float = 5.0,
    first_byte_s: float = 2.0,
    **kwargs: object,
) -> LLMRouter:
    urls, keys = sim.base_urls(url), {p: SecretStr(k) for p, k in sim.keys.items()}
    clients = [
        DeepSeekClient(urls["deepseek"], keys["deepseek"], "deepseek-v4-flash"),
        GeminiClient(urls["gemini"], keys["gemini"], "gemini-3.8-flash"),
        ClaudeClient(urls["claude"], keys["claude"], "claude-sonnet-5-5"),
        QwenClient(urls["qwen"], keys["qwen"], "qwen-plus"),
    ]
    return LLMRouter(clients, llm_timeout_s=llm_timeout_s, first_byte_timeout_s=first_byte_s, **kwargs)  # type: ignore[arg-type]


def complete(llm: LLMRouter, deadline_in_s: float) -> RouterResult:
    async def call() -> RouterResult:
        try:
            return await llm.complete(REQUEST, deadline=time.monotonic() + deadline_in_s)
        finally:
            await llm.aclose()

    return asyncio.run(call())


def test_the_primary_answers_when_healthy(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    result = complete(router(sim, served[1]), 10)
    assert result.result.provider == "deepseek" and result.fallbacks == 0
    assert [(a.provider, a.outcome) for a in result.attempts] == [("deepseek", "ok")]


def test_a_5xx_falls_back_to_the_second_provider_within_the_deadline(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    sim.fault("deepseek", "error500")
    seen: list[Attempt] = []
    result = complete(router(sim, served[1], on_attempt=seen.append), 10)
    assert result.result.provider == "gemini" and result.result.text == sim.answer["gemini"]
    assert [(a.provider, a.outcome, a.status) for a in result.attempts] == [
        ("deepseek", "server_error", 500),
        ("gemini", "ok", None),
    ]
    assert result.fallbacks == 1 and seen == result.attempts
    assert sim.hits["deepseek"] == 1  # a failed provider is not tried again


@pytest.mark.parametrize(
    "fault", ["rate_limited", "malformed", "broken_stream", "slow_first_byte", "timeout"]
)
def test_every_failure_moves_on(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator, fault: str
) -> None:
    sim.fault("deepseek", fault, delay_s=30)
    sim.fault("gemini", "error503")
    sim.fault("claude", "overloaded")
    result = complete(router(sim, served[1], first_byte_s=0.3), 15)
    assert result.result.provider == "qwen" and result.fallbacks == 3
    assert [a.outcome for a in result.attempts][1:] == ["server_error", "overloaded", "ok"]


def test_a_config_error_is_logged_at_error_level_and_falls_back(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    llm = router(sim, served[1])
    sim.keys["deepseek"] = "rotated-key"  # the key in the settings is no longer valid
    try:
        with caplog.at_level(logging.WARNING, logger="llm_orchestrator.providers.router"):
            result = complete(llm, 10)
    finally:
        sim.keys["deepseek"] = "deepseek-test-key"
    assert result.result.provider == "gemini"
    assert (result.attempts[0].outcome, result.attempts[0].status) == ("config", 401)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and getattr(errors[0], "provider", None) == "deepseek"


def test_all_down_raises_all_providers_failed_with_every_attempt(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    for provider in ("deepseek", "gemini", "claude", "qwen"):
        sim.fault(provider, "error500")
    with pytest.raises(AllProvidersFailed) as info:
        complete(router(sim, served[1]), 10)
    assert [(a.provider, a.outcome) for a in info.value.attempts] == [
        ("deepseek", "server_error"),
        ("gemini", "server_error"),
        ("claude", "server_error"),
        ("qwen", "server_error"),
    ]


def test_all_silent_never_waits_past_the_deadline(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    """Every provider holds its answer for 30 s; the chain's deadline is 1.5 s: the first attempt
    gets all of it (min(llm_timeout, left)), the others are skipped for want of time."""
    for provider in ("deepseek", "gemini", "claude", "qwen"):
        sim.fault(provider, "timeout", delay_s=30)
    started = time.monotonic()
    with pytest.raises(AllProvidersFailed) as info:
        complete(router(sim, served[1], llm_timeout_s=15, first_byte_s=5), 1.5)
    assert time.monotonic() - started < 10  # cut at the deadline, not the 30 s fault or 15 s timeout
    outcomes = [a.outcome for a in info.value.attempts]
    assert outcomes[0] == "first_byte_timeout" and set(outcomes[1:]) == {"no_time"}


def test_each_attempt_is_capped_by_llm_timeout(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator
) -> None:
    sim.fault("deepseek", "trickle", interval_s=1.0)
    result = complete(router(sim, served[1], llm_timeout_s=2.5, first_byte_s=2.2), 20)
    assert result.attempts[0].outcome == "timeout" and result.result.provider == "gemini"


def test_the_router_from_settings_follows_their_order_and_prices(
    served: tuple[DialogueSimulator, str], sim: DialogueSimulator, env_writer: EnvWriterFactory
) -> None:
    write_env = env_writer(LlmOrchestratorSettings)
    write_env(
        {
            **sim.settings_env(served[1]),
            "LLM_PRIMARY_PROVIDER": "claude",
            "LLM_FALLBACK_PROVIDERS": "qwen,gemini",
        }
    )
    settings = LlmOrchestratorSettings.load()
    llm = LLMRouter.from_settings(settings)
    assert llm.providers == ["claude", "qwen", "gemini"]
    sim.fault("claude", "overloaded")
    result = complete(llm, 10)
    answer = result.result
    assert answer.provider == "qwen"
    assert answer.cost_usd == pytest.approx(
        cost_usd(
            answer.input_tokens,
            answer.output_tokens,
            settings.qwen_price_input_per_1m,
            settings.qwen_price_output_per_1m,
        )
    )
    assert answer.cost_usd > 0
    sent = sim.calls_of("qwen")[-1]["json"]
    assert sent["model"] == settings.qwen_model and sent["max_tokens"] == 200
