"""Stand-ins for the chat LLM APIs the agents call (tests and benchmarks; never imported by app code):
DeepSeek chat completions (OpenAI-compatible) and Gemini ``generateContent`` on one Starlette app.

    sim = LLMSimulator({"deepseek": {...answer...}, "gemini": {...answer...}})
    sim.mode["deepseek"] = "slow"   # ok, error500, rate_limited, slow, malformed, garbage_answer
    sim.answer_next("gemini", 200, body)     # the next valid call answers exactly ``body``

The Gemini checks are those of :mod:`unde_testkit.recognition_simulators` (model ids, key,
thinkingConfig, Google error bodies).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from unde_testkit.recognition_simulators import (
    gemini_admit,
    gemini_rate_limited,
    gemini_usage,
    google_error,
)

__all__ = ["DEEPSEEK_MODELS", "LLMSimulator", "deepseek_error"]

#: served DeepSeek model ids (https://api-docs.deepseek.com/quick_start/pricing): deepseek-flash (V4.1
#: Flash), the legacy deepseek-v4-flash (still accepted, served by the same model) and deepseek-v4-pro;
#: deepseek-chat and deepseek-reasoner were retired on 2026-07-24 and answer 400 "Model Not Exist"
#: like any unknown id
DEEPSEEK_MODELS = frozenset({"deepseek-flash", "deepseek-v4-flash", "deepseek-v4-pro"})


def deepseek_error(status: int, message: str, kind: str, code: str) -> Response:
    """DeepSeek's (OpenAI-compatible) error body ``{"error": {"message", "type", "param", "code"}}``;
    the 400 and 401 bodies as the API answers them (deepwn/addi#13, langbot-app/LangBot#1643,
    deepseek-ai/DeepSeek-R1#82, continuedev/continue#10056); 429/500 messages are the names of
    https://api-docs.deepseek.com/quick_start/error_codes (their type/code fields are not documented)."""
    error = {"message": message, "type": kind, "param": None, "code": code}
    return JSONResponse({"error": error}, status_code=status)


class LLMSimulator:
    """DeepSeek (``/chat/completions``) and Gemini (``/v1beta/models/{model}:generateContent``),
    strict where the real APIs are: unknown or retired model ids (DeepSeek 400 "Model Not Exist",
    Gemini 404 NOT_FOUND), a missing key (401 / 403), a malformed ``thinking`` /
    ``thinkingConfig`` (400). Thinking left on costs what it costs in production: DeepSeek V4
    thinks by default (https://api-docs.deepseek.com/guides/thinking_mode) and the answer then comes
    ``thinking_s`` later with ``reasoning_content``; Gemini bills ``thoughtsTokenCount``.
    One fault mode per provider: ok | error500 | rate_limited | slow | malformed | garbage_answer."""

    def __init__(self, answers: dict[str, dict[str, Any]], *, thinking_s: float = 0.5) -> None:
        self.mode = {"deepseek": "ok", "gemini": "ok"}
        self.thinking_s = thinking_s
        #: the JSON object each model answers (as its message text)
        self.answer: dict[str, dict[str, Any]] = {k: dict(v) for k, v in answers.items()}
        self.requests: list[dict[str, Any]] = []
        #: every request as sent: method, path, headers (authorization / x-goog-api-key,
        #: content-type), JSON body
        self.calls: list[dict[str, Any]] = []
        self.scripted: dict[str, list[tuple[int, Any]]] = {"deepseek": [], "gemini": []}
        self.app = Starlette(
            routes=[
                Route("/chat/completions", self.deepseek, methods=["POST"]),
                Route("/v1beta/models/{model}:generateContent", self.gemini, methods=["POST"]),
            ]
        )

    def answer_next(self, provider: str, status: int, body: Any) -> None:
        """Answer the next valid call to ``provider`` with exactly ``body`` (contract fixtures)."""
        self.scripted[provider].append((status, body))

    def _record(self, request: Request, body: Any) -> None:
        names = ("authorization", "x-goog-api-key", "content-type")
        self.calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": {k: request.headers[k] for k in names if k in request.headers},
                "json": body,
            }
        )

    def _scripted(self, provider: str) -> Response | None:
        if not self.scripted[provider]:
            return None
        status, body = self.scripted[provider].pop(0)
        return JSONResponse(body, status_code=status)

    async def _fault(self, provider: str, model: str) -> Response | None:
        mode = self.mode[provider]
        if mode == "error500":
            if provider == "gemini":
                return google_error(500, "INTERNAL", "An internal error has occurred. Please retry.")
            return deepseek_error(500, "Server Error", "server_error", "server_error")
        if mode == "rate_limited":
            if provider == "gemini":
                return gemini_rate_limited(model, 30)
            return deepseek_error(429, "Rate Limit Reached", "rate_limit_error", "rate_limit_reached")
        if mode == "slow":
            await asyncio.sleep(3)
        if mode == "malformed":
            return Response(b'{"choices": [', media_type="application/json")
        return None

    def _content(self, provider: str) -> str:
        if self.mode[provider] == "garbage_answer":
            return "I think the user is happy!"
        return json.dumps(self.answer[provider])

    async def deepseek(self, request: Request) -> Response:
        body = await request.json()
        auth = request.headers.get("authorization")
        self.requests.append({"provider": "deepseek", "auth": auth, "body": body})
        self._record(request, body)
        if not auth or not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return deepseek_error(
                401,
                "Authentication Fails (auth header format should be Bearer sk-...)",
                "authentication_error",
                "invalid_request_error",
            )
        model = body.get("model")
        if model not in DEEPSEEK_MODELS:
            return deepseek_error(400, "Model Not Exist", "invalid_request_error", "invalid_request_error")
        thinking = body.get("thinking", {"type": "enabled"})
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
            return deepseek_error(
                400,
                "thinking.type must be enabled or disabled",
                "invalid_request_error",
                "invalid_request_error",
            )
        fault = await self._fault("deepseek", model)
        if fault is not None:
            return fault
        if (scripted := self._scripted("deepseek")) is not None:
            return scripted
        message: dict[str, Any] = {"role": "assistant", "content": self._content("deepseek")}
        reasoning = 0
        if thinking["type"] == "enabled":
            await asyncio.sleep(self.thinking_s)
            message = {"role": "assistant", "reasoning_content": "Let me think...", **message}
            reasoning = 180
        completion = len(message["content"]) // 4 + reasoning
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 420,
                    "completion_tokens": completion,
                    "total_tokens": 420 + completion,
                    "prompt_tokens_details": {"cached_tokens": 384},
                    "prompt_cache_hit_tokens": 384,
                    "prompt_cache_miss_tokens": 36,
                    "completion_tokens_details": {"reasoning_tokens": reasoning},
                },
                "system_fingerprint": "fp_sim",
            }
        )

    async def gemini(self, request: Request) -> Response:
        model = request.path_params["model"]
        body = await request.json()
        key = request.headers.get("x-goog-api-key")
        self.requests.append({"provider": "gemini", "path": request.url.path, "key": key, "body": body})
        self._record(request, body)
        level = gemini_admit(key, key or "", model, body)
        if isinstance(level, Response):
            return level
        fault = await self._fault("gemini", model)
        if fault is not None:
            return fault
        if (scripted := self._scripted("gemini")) is not None:
            return scripted
        text = self._content("gemini")
        return JSONResponse(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": gemini_usage(420, text, level),
                "modelVersion": model,
            }
        )
