"""Claude (a dialogue fallback) through the Anthropic Messages API, streamed.

``POST {base}/v1/messages`` with ``x-api-key``, ``anthropic-version: 2023-06-01`` (setting
``anthropic_version``) and ``"stream": true`` (https://docs.claude.com/en/api/messages,
https://docs.claude.com/en/api/versioning). Claude Sonnet 5.5 thinks adaptively by default and
refuses non-default sampling parameters, so the client never sends ``temperature`` and asks for
``output_config.effort`` (setting ``claude_effort``, ``low``: a dialogue turn) instead
(https://platform.claude.com/docs/en/about-claude/models/overview, Sonnet 5 / 5.5 migration notes).

Stream (https://docs.claude.com/en/docs/build-with-claude/streaming; anthropic-sdk-python
``src/anthropic/lib/streaming/_messages.py``): ``message_start`` (``message.usage.input_tokens``,
plus ``cache_creation_input_tokens`` / ``cache_read_input_tokens``), per content block
``content_block_start`` / ``content_block_delta`` (``text_delta`` is answer text; ``thinking_delta``
and ``signature_delta`` are not) / ``content_block_stop``, ``message_delta`` (``delta.stop_reason``,
cumulative ``usage.output_tokens``), ``message_stop``; ``ping`` any time. An ``error`` event can
arrive mid-stream: ``overloaded_error`` is what a 529 would have been before the stream started.
Cache writes and reads are counted at the plain input price (an upper bound for reads).
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from llm_orchestrator.providers.base import (
    ErrorKind,
    LLMProviderError,
    LLMRequest,
    StreamedLLMClient,
    StreamState,
    http_config,
    parse_json_event,
    sse_events,
)
from llm_orchestrator.providers.settings import ProviderSettings

__all__ = ["ANTHROPIC_ERROR_KINDS", "ClaudeClient"]

#: error.type of Anthropic's error bodies and error events (https://docs.claude.com/en/api/errors)
ANTHROPIC_ERROR_KINDS: dict[str, ErrorKind] = {
    "invalid_request_error": "config",
    "authentication_error": "config",
    "permission_error": "config",
    "not_found_error": "config",
    "request_too_large": "config",
    "rate_limit_error": "rate_limited",
    "api_error": "server_error",
    "overloaded_error": "overloaded",
}


class ClaudeClient(StreamedLLMClient):
    name = "claude"

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        model: str,
        *,
        anthropic_version: str = "2023-06-01",
        effort: str | None = "low",
        price_in_per_1m: float = 0.0,
        price_out_per_1m: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"x-api-key": api_key.get_secret_value(), "anthropic-version": anthropic_version}
        super().__init__(
            model,
            http_config("claude", base_url, headers),
            price_in_per_1m=price_in_per_1m,
            price_out_per_1m=price_out_per_1m,
            transport=transport,
        )
        self.effort = effort

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> ClaudeClient:
        return cls(
            str(settings.claude_base_url),
            settings.claude_api_key,
            settings.claude_model,
            anthropic_version=settings.anthropic_version,
            effort=settings.claude_effort,
            price_in_per_1m=settings.claude_price_input_per_1m,
            price_out_per_1m=settings.claude_price_output_per_1m,
        )

    def build(self, request: LLMRequest) -> tuple[str, dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": request.max_tokens}
        if request.system:
            body["system"] = request.system
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        body["stream"] = True
        if self.effort:
            body["output_config"] = {"effort": self.effort}
        return "/v1/messages", body, {"Accept": "text/event-stream"}

    async def consume(self, response: httpx.Response, state: StreamState) -> None:
        async for event, data in sse_events(response):
            payload = parse_json_event(self.name, data)
            if not isinstance(payload, dict):
                raise LLMProviderError(self.name, "malformed", "stream event is not a JSON object")
            kind = payload.get("type", event)
            if kind == "error":
                raw = payload.get("error")
                error: dict[str, Any] = raw if isinstance(raw, dict) else {}
                error_type = str(error.get("type", ""))
                raise LLMProviderError(
                    self.name,
                    ANTHROPIC_ERROR_KINDS.get(error_type, "server_error"),
                    f"{error_type}: {error.get('message', '')}"[:300],
                )
            if kind == "message_start":
                usage = (payload.get("message") or {}).get("usage") or {}
                state.input_tokens = _input_tokens(usage)
                state.output_tokens = _int(usage.get("output_tokens"))
            elif kind == "content_block_delta":
                delta = payload.get("delta") or {}
                if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                    state.text(delta["text"])
            elif kind == "message_delta":
                usage = payload.get("usage") or {}
                if _int(usage.get("output_tokens")) is not None:
                    state.output_tokens = _int(usage.get("output_tokens"))
                if _input_tokens(usage):
                    state.input_tokens = max(state.input_tokens or 0, _input_tokens(usage) or 0)
                if (payload.get("delta") or {}).get("stop_reason") == "refusal":
                    raise LLMProviderError(self.name, "blocked", "stop_reason refusal")
            elif kind == "message_stop":
                state.finished = True
                return


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _input_tokens(usage: dict[str, Any]) -> int | None:
    plain = _int(usage.get("input_tokens"))
    if plain is None:
        return None
    cached = (_int(usage.get("cache_creation_input_tokens")) or 0) + (
        _int(usage.get("cache_read_input_tokens")) or 0
    )
    return plain + cached
