"""The fuzz run of mood_agent (unde_testkit.fuzz): schemathesis from its OpenAPI plus hand-made
bodies against a real Redis and the LLM simulator — no answer is a 5xx, none raises."""

from __future__ import annotations

import pytest

from mood_agent.app import create
from mood_agent.settings import MoodAgentSettings
from unde_testkit.fuzz import fuzz_app
from unde_testkit.llm_simulators import LLMSimulator
from unde_testkit.service_auth import service_client
from unde_testkit.testing import LoopbackServer

pytestmark = pytest.mark.timeout(180)

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


def test_fuzz_finds_no_5xx(redis_url: str) -> None:
    simulator = LLMSimulator({"deepseek": dict(ANSWER), "gemini": dict(ANSWER)})
    with LoopbackServer(simulator.app) as server:
        settings = MoodAgentSettings.load(
            mood_llm_api_key="ds-key",
            mood_fallback_api_key="gm-key",
            deepseek_base_url=server.url,
            gemini_base_url=server.url,
            redis_url=redis_url.rsplit("/", 1)[0] + "/9",
            mood_llm_budget_ms=300,
            mood_hedge_after_ms=100,
            mood_deadline_ms=500,
        )
        with service_client(create(settings)) as client:
            report = fuzz_app(client, "mood_agent", max_examples=40)
    print(report.summary())
    assert report.requests > 100
    assert report.findings == [], report.summary()
