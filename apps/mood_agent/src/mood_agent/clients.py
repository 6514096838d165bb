"""Real API clients of the two mood LLMs: DeepSeek chat completions (primary) and Gemini
``generateContent`` (fallback). Base URLs, models and keys are settings; timeouts are tight and
there is no retry inside the latency budget (the classifier falls back instead).

Both models think before answering unless told not to, which a 150 ms budget cannot afford:

- DeepSeek V4: thinking mode is on by default; ``"thinking": {"type": "disabled"}`` turns it off
  (https://api-docs.deepseek.com/guides/thinking_mode); JSON mode is ``response_format``
  ``json_object`` with "json" in the prompt (https://api-docs.deepseek.com/guides/json_mode).
- Gemini 3: ``generationConfig.thinkingConfig.thinkingLevel = "minimal"``
  (https://ai.google.dev/gemini-api/docs/thinking); no ``temperature`` (Gemini 3 models are tuned
  for the default, 3.5 Flash-Lite ignores custom values).

Request/response contracts: ``tests/contracts/deepseek_chat_completions.json`` and
``gemini_generate_content.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Protocol

from pydantic import SecretStr

from mood_agent.lexicon import TOPICS, Classification
from unde_common.http import AsyncProviderClient, ProviderConfig, RetryPolicy

__all__ = ["DeepSeekClient", "GeminiClient", "MoodLLM", "parse_classification", "system_prompt"]

_TOPICS = frozenset([*TOPICS, "small_talk", "other"])
_NUMBERS = ("valence", "arousal", "dominance", "frustration", "urgency", "confidence", "fatigue")


def system_prompt() -> str:
    return resources.files("mood_agent").joinpath("prompts/mood_system.txt").read_text("utf-8")


def parse_classification(text: str) -> Classification:
    """The model's JSON answer → Classification; ValueError naming what is wrong."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"model answer is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("model answer is not a JSON object")
    values: dict[str, float] = {}
    for key in _NUMBERS:
        raw = data.get(key)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
            raise ValueError(f"model answer field {key!r} is not a number 0..1: {raw!r}")
        values[key] = round(float(raw), 2)
    topic = data.get("topic")
    return Classification(
        **values,
        topic=topic if isinstance(topic, str) and topic in _TOPICS and topic not in ("other",) else None,
        thread_break=data.get("thread_break") is True,
    )


class MoodLLM(Protocol):
    name: str

    async def classify(self, text: str, timeout_s: float) -> Classification: ...

    async def aclose(self) -> None: ...


def _config(name: str, base_url: str, timeout_s: float, headers: dict[str, str]) -> ProviderConfig:
    return ProviderConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        connect_timeout_s=min(timeout_s, 0.5),
        read_timeout_s=timeout_s,
        write_timeout_s=timeout_s,
        pool_timeout_s=min(timeout_s, 0.2),
        retry=RetryPolicy(max_attempts=1),
        headers=headers,
        max_connections=50,
    )


class DeepSeekClient:
    """``POST {base}/chat/completions`` (OpenAI-compatible), JSON output mode."""

    name = "deepseek"

    def __init__(self, base_url: str, api_key: SecretStr, model: str, *, timeout_s: float = 1.0) -> None:
        self.model = model
        self.prompt = system_prompt()
        self.http = AsyncProviderClient(
            _config(
                "deepseek", base_url, timeout_s, {"Authorization": f"Bearer {api_key.get_secret_value()}"}
            )
        )

    async def classify(self, text: str, timeout_s: float) -> Classification:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": self.prompt}, {"role": "user", "content": text}],
            "thinking": {"type": "disabled"},
            "response_format": {"type": "json_object"},
            "temperature": 0,
            "max_tokens": 160,
            "stream": False,
        }
        data = await self.http.post_json("/chat/completions", json=body, retry=False, timeout=timeout_s)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError("deepseek: response has no choices[0].message.content") from None
        return parse_classification(str(content))

    async def aclose(self) -> None:
        await self.http.aclose()


class GeminiClient:
    """``POST {base}/v1beta/models/{model}:generateContent`` with ``x-goog-api-key``."""

    name = "gemini"

    def __init__(self, base_url: str, api_key: SecretStr, model: str, *, timeout_s: float = 1.0) -> None:
        self.model = model
        self.prompt = system_prompt()
        self.http = AsyncProviderClient(
            _config("gemini", base_url, timeout_s, {"x-goog-api-key": api_key.get_secret_value()})
        )

    async def classify(self, text: str, timeout_s: float) -> Classification:
        body: dict[str, Any] = {
            "systemInstruction": {"parts": [{"text": self.prompt}]},
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "maxOutputTokens": 160,
                "thinkingConfig": {"thinkingLevel": "minimal"},
            },
        }
        path = f"/v1beta/models/{self.model}:generateContent"
        data = await self.http.post_json(path, json=body, retry=False, timeout=timeout_s)
        try:
            parts = data["candidates"][0]["content"]["parts"]
            # thought summaries (parts marked "thought": true) are not the answer
            content = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
        except (KeyError, IndexError, TypeError):
            raise ValueError("gemini: response has no candidates[0].content.parts text") from None
        if not content:
            raise ValueError("gemini: response has no candidates[0].content.parts text")
        return parse_classification(content)

    async def aclose(self) -> None:
        await self.http.aclose()
