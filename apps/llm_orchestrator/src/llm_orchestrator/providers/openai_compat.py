"""The OpenAI-compatible chat completions stream that DeepSeek and Qwen (DashScope compatible
mode) both speak: ``POST {base}/chat/completions`` with ``Authorization: Bearer``, ``stream: true``
and ``stream_options.include_usage``; the answer is server-sent events, one
``chat.completion.chunk`` per ``data:`` line (text in ``choices[0].delta.content``), a last chunk
with ``usage`` (``prompt_tokens`` / ``completion_tokens``; ``choices`` empty), then ``data: [DONE]``.

Sources: https://api-docs.deepseek.com/api/create-chat-completion (``stream``,
``stream_options.include_usage``, the chunk object), https://api-docs.deepseek.com/quick_start/
rate_limit (``: keep-alive`` comments while a request waits), openai-python
``src/openai/types/chat/chat_completion_chunk.py`` (chunk fields), DashScope's OpenAI-compatible
mode https://www.alibabacloud.com/help/en/model-studio/compatibility-of-openai-with-dashscope.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from llm_orchestrator.providers.base import (
    LLMProviderError,
    LLMRequest,
    StreamedLLMClient,
    StreamState,
    parse_json_event,
    sse_events,
)

__all__ = ["OpenAICompatibleClient"]

log = logging.getLogger(__name__)


class OpenAICompatibleClient(StreamedLLMClient):
    """Chat completions streamed; a subclass adds its provider's own body fields (:meth:`extra`)."""

    def extra(self) -> dict[str, Any]:
        return {}

    def build(self, request: LLMRequest) -> tuple[str, dict[str, Any], dict[str, str]]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.extra(),
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return "/chat/completions", body, {"Accept": "text/event-stream"}

    async def consume(self, response: httpx.Response, state: StreamState) -> None:
        async for _, data in sse_events(response):
            if data.strip() == "[DONE]":
                state.finished = True
                return
            chunk = parse_json_event(self.name, data)
            if not isinstance(chunk, dict):
                raise LLMProviderError(self.name, "malformed", "stream chunk is not a JSON object")
            if isinstance(chunk.get("error"), dict):  # an error reported inside a started stream
                error = chunk["error"]
                raise LLMProviderError(self.name, "server_error", str(error.get("message") or error)[:300])
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                state.input_tokens = _int(usage.get("prompt_tokens"))
                state.output_tokens = _int(usage.get("completion_tokens"))
            choices = chunk.get("choices")
            if not isinstance(choices, list):
                raise LLMProviderError(self.name, "malformed", "stream chunk has no choices list")
            for choice in choices[:1]:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict):
                    raise LLMProviderError(self.name, "malformed", "stream choice has no delta")
                content = delta.get("content")
                if isinstance(content, str):
                    state.text(content)
                reason = choice.get("finish_reason")
                if reason == "content_filter":
                    raise LLMProviderError(self.name, "blocked", "finish_reason content_filter")
                if reason == "length":
                    log.warning("answer cut at max_tokens", extra={"provider": self.name})


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
