"""Gemini (a dialogue fallback), streamed: ``POST {base}/v1beta/models/{model}:streamGenerateContent
?alt=sse`` with ``x-goog-api-key`` (https://ai.google.dev/api/generate-content#method:-models.
streamgeneratecontent). The request is generateContent's: ``systemInstruction``, ``contents`` (roles
``user`` / ``model``), ``generationConfig.maxOutputTokens`` and ``thinkingConfig.thinkingLevel``
(setting ``gemini_thinking_level``, ``low`` by default; Gemini 3.8 Flash takes low/medium/high and
thinks at medium otherwise: https://ai.google.dev/gemini-api/docs/thinking). No ``temperature``:
Google tunes Gemini 3 for the default and advises against changing it.

With ``alt=sse`` every event is one ``GenerateContentResponse`` (text in
``candidates[0].content.parts[].text``; parts marked ``thought`` are not the answer), the last one
carrying ``finishReason`` and the final ``usageMetadata``; there is no ``[DONE]``: the stream ends.
``thoughtsTokenCount`` is billed as output (https://ai.google.dev/gemini-api/docs/pricing).
A ``finishReason`` of SAFETY / RECITATION / … or ``promptFeedback.blockReason`` is a refusal.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from llm_orchestrator.providers.base import (
    LLMProviderError,
    LLMRequest,
    StreamedLLMClient,
    StreamState,
    http_config,
    parse_json_event,
    sse_events,
)
from llm_orchestrator.providers.settings import ProviderSettings

__all__ = ["GeminiClient"]

#: finishReason values of a complete answer (https://ai.google.dev/api/generate-content#FinishReason)
_DONE = frozenset({"STOP", "MAX_TOKENS"})


class GeminiClient(StreamedLLMClient):
    name = "gemini"

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        model: str,
        *,
        thinking_level: str = "low",
        price_in_per_1m: float = 0.0,
        price_out_per_1m: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"x-goog-api-key": api_key.get_secret_value()}
        super().__init__(
            model,
            http_config("gemini", base_url, headers),
            price_in_per_1m=price_in_per_1m,
            price_out_per_1m=price_out_per_1m,
            transport=transport,
        )
        self.thinking_level = thinking_level

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> GeminiClient:
        return cls(
            str(settings.gemini_base_url),
            settings.gemini_api_key,
            settings.gemini_model,
            thinking_level=settings.gemini_thinking_level,
            price_in_per_1m=settings.gemini_price_input_per_1m,
            price_out_per_1m=settings.gemini_price_output_per_1m,
        )

    def build(self, request: LLMRequest) -> tuple[str, dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {
            "contents": [
                {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
                for m in request.messages
            ],
            "generationConfig": {
                "maxOutputTokens": request.max_tokens,
                "thinkingConfig": {"thinkingLevel": self.thinking_level},
            },
        }
        if request.system:
            body = {"systemInstruction": {"parts": [{"text": request.system}]}, **body}
        return f"/v1beta/models/{self.model}:streamGenerateContent?alt=sse", body, {}

    async def consume(self, response: httpx.Response, state: StreamState) -> None:
        async for _, data in sse_events(response):
            chunk = parse_json_event(self.name, data)
            if not isinstance(chunk, dict):
                raise LLMProviderError(self.name, "malformed", "stream event is not a JSON object")
            if isinstance(chunk.get("error"), dict):
                error = chunk["error"]
                raise LLMProviderError(self.name, "server_error", str(error.get("message") or error)[:300])
            feedback = chunk.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                raise LLMProviderError(self.name, "blocked", f"prompt blocked: {feedback['blockReason']}")
            usage = chunk.get("usageMetadata")
            if isinstance(usage, dict):
                state.input_tokens = _int(usage.get("promptTokenCount"))
                candidates_tokens = _int(usage.get("candidatesTokenCount"))
                thoughts = _int(usage.get("thoughtsTokenCount")) or 0
                state.output_tokens = None if candidates_tokens is None else candidates_tokens + thoughts
            candidates = chunk.get("candidates")
            if candidates is None and isinstance(usage, dict):
                continue  # a usage-only event
            if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
                raise LLMProviderError(self.name, "malformed", "stream event has no candidates")
            candidate = candidates[0]
            parts = (candidate.get("content") or {}).get("parts") or []
            if not isinstance(parts, list):
                raise LLMProviderError(self.name, "malformed", "candidate parts is not a list")
            for part in parts:
                if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
                    state.text(part["text"])
            reason = candidate.get("finishReason")
            if reason in _DONE:
                state.finished = True
            elif reason and reason != "FINISH_REASON_UNSPECIFIED":
                raise LLMProviderError(self.name, "blocked", f"finishReason {reason}")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
