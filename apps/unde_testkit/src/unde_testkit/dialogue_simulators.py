"""Stand-ins for the dialogue's external providers (tests, the lab and the benchmarks; never imported by
app code): DeepSeek, Gemini, Claude and Qwen streaming chat, Cohere ``/v2/embed`` and Intelistyle, on
one Starlette app, each under its own path prefix so each gets its own base URL::

    sim = DialogueSimulator()
    with LoopbackServer(sim.app) as server:
        env = sim.settings_env(server.url)     # {"DEEPSEEK_BASE_URL": ".../deepseek", ..., keys}
        sim.fault("deepseek", "error500")       # every DeepSeek call answers 500 ...
        sim.fault("claude", "overloaded", times=1)  # ... one Claude call answers 529
        sim.latency_s["cohere"] = 0.05          # benchmarks: a fixed latency per provider

- DeepSeek: ``POST /deepseek/chat/completions`` (``DEEPSEEK_BASE_URL`` = ``<url>/deepseek``)
- Qwen: ``POST /qwen/compatible-mode/v1/chat/completions`` (``QWEN_BASE_URL``)
- Gemini: ``POST /gemini/v1beta/models/{model}:streamGenerateContent?alt=sse`` and
  ``:generateContent`` (``GEMINI_BASE_URL`` = ``<url>/gemini``)
- Claude: ``POST /claude/v1/messages`` (``CLAUDE_BASE_URL``)
- Cohere: ``POST /cohere/v2/embed`` (``EMBEDDING_BASE_URL``)
- Intelistyle: ``POST /intelistyle/v3/recommendations`` (``INTELISTYLE_API_URL``)

What each one refuses, as the real service does (before any fault is injected):

- a missing or wrong key: DeepSeek 401 ``authentication_error``, Qwen 401 ``invalid_api_key``,
  Gemini 403 PERMISSION_DENIED / 400 API_KEY_INVALID (:func:`gemini_admit`), Claude 401
  ``authentication_error``, Cohere 401 ``invalid api token``, Intelistyle 401;
- unknown or retired model ids: DeepSeek 400 "Model Not Exist", Qwen 404 ``model_not_found``,
  Gemini 404 NOT_FOUND, Claude 404 ``not_found_error`` (``claude-sonnet-4-20250514`` is retired),
  Cohere 404;
- a missing or unknown ``anthropic-version`` (400), a Claude ``temperature`` / ``top_p`` /
  ``top_k`` on a model that takes none (400), a missing ``max_tokens`` (400); DeepSeek
  ``thinking`` not ``{type: enabled|disabled}`` (400); Gemini thinking config errors (400);
- Cohere: ``input_type`` missing for a v3 model, ``embedding_types`` missing, more than 96 texts,
  no texts (400).

Error bodies are the providers' shapes (sources in the README's provider table); where a message
was not found in public material it is written like the documented ones and says so here:
Claude's version/sampling messages, Qwen's 404/429, Intelistyle's (no public API reference).

Faults per provider (:meth:`DialogueSimulator.fault`, ``times`` calls then healthy again):
``timeout`` (no answer for ``delay_s``), ``slow_first_byte`` (headers at once, the first answer text
after ``delay_s``; Claude sends ``message_start`` + ``ping`` first), ``trickle`` (every chunk
``interval_s`` apart), ``rate_limited`` (429 with the provider's hint: ``Retry-After`` from Qwen,
Cohere and Intelistyle, ``retry-after`` + ``retry-after-ms`` from Claude, ``google.rpc.RetryInfo``
in Gemini's body, none from DeepSeek, which documents none), ``error500``, ``error503``,
``overloaded`` (Claude 529 ``overloaded_error``), ``midstream_overloaded`` (Claude: the stream
starts, then an ``error`` event), ``malformed`` (a 200 whose JSON is cut), ``broken_stream`` (the
stream ends before its end marker). ``latency_s[provider]`` delays every answer (benchmarks: embed
0.05, LLM 1.0: the LLM's latency comes before its first text, the rest follows at once); ``instant =
True`` sends the whole answer in one chunk with no delays.

Cohere's embeddings are deterministic: each lower-cased word of a text (``\\w+``) maps to a fixed
pseudo-random Gaussian vector (seeded by the word's BLAKE2 hash), a text's vector is the sum of its
words' vectors, L2-normalised, ``dims`` long (1024 for the v3 models, 384 for the light ones,
1536 for embed-v4.0). Texts that share words are therefore close (cosine grows with the shared
share of words), texts with no word in common are nearly orthogonal; ``search_query`` and
``search_document`` give the same vector, so a query finds the documents that share its words.
The retrieval-quality benchmark relies on this. Every request is recorded in ``calls``
(provider, method, path, query, the auth / version / content-type headers, JSON body).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from unde_testkit.llm_simulators import DEEPSEEK_MODELS, deepseek_error
from unde_testkit.recognition_simulators import gemini_admit, gemini_rate_limited, gemini_usage, google_error

__all__ = [
    "ANTHROPIC_VERSIONS",
    "CLAUDE_MODELS",
    "COHERE_MODELS",
    "FAULTS",
    "PROVIDERS",
    "QWEN_MODELS",
    "DialogueSimulator",
    "hashed_embedding",
]

PROVIDERS = ("deepseek", "qwen", "gemini", "claude", "cohere", "intelistyle")
FAULTS = frozenset(
    {
        "timeout",
        "slow_first_byte",
        "trickle",
        "rate_limited",
        "error500",
        "error503",
        "overloaded",
        "midstream_overloaded",
        "malformed",
        "broken_stream",
    }
)

#: Claude model ids served (https://platform.claude.com/docs/en/about-claude/models/overview);
#: claude-sonnet-4-20250514 and the 3.x ids are retired (…/model-deprecations) and answer 404.
#: The value: whether the model refuses non-default sampling parameters (Claude 5 family).
CLAUDE_MODELS: dict[str, bool] = {
    "claude-sonnet-5-5": True,
    "claude-sonnet-5": True,
    "claude-opus-5-5": True,
    "claude-opus-5": True,
    "claude-haiku-4-5": False,
    "claude-sonnet-4-6": False,
}
#: anthropic-version values the API takes (https://docs.claude.com/en/api/versioning)
ANTHROPIC_VERSIONS = frozenset({"2023-06-01", "2023-01-01"})
#: Qwen ids of Model Studio (international) served here
QWEN_MODELS = frozenset({"qwen-plus", "qwen-max", "qwen-turbo", "qwen-flash", "qwen3-max", "qwen3.5-plus"})
#: Cohere embed models and their dimension (https://docs.cohere.com/docs/cohere-embed); the v2.0
#: models were retired and answer 404 like any unknown id
COHERE_MODELS: dict[str, int] = {
    "embed-multilingual-v3.0": 1024,
    "embed-english-v3.0": 1024,
    "embed-multilingual-light-v3.0": 384,
    "embed-english-light-v3.0": 384,
    "embed-v4.0": 1536,
}
COHERE_MAX_TEXTS = 96
_WORD = re.compile(r"\w+")


@dataclass(slots=True)
class _Fault:
    kind: str
    times: int | None
    delay_s: float
    interval_s: float
    retry_after_s: float


_WORD_VECTORS: dict[tuple[str, int], np.ndarray[Any, np.dtype[np.float64]]] = {}


def _word_vector(word: str, dims: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    key = (word, dims)
    vector = _WORD_VECTORS.get(key)
    if vector is None:
        seed = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "big")
        vector = np.random.default_rng(seed).standard_normal(dims)
        if len(_WORD_VECTORS) < 200_000:
            _WORD_VECTORS[key] = vector
    return vector


def hashed_embedding(text: str, dims: int = 1024) -> list[float]:
    """The simulator's deterministic embedding of ``text`` (see the module docstring)."""
    words = _WORD.findall(text.lower())
    total = np.zeros(dims)
    for word in words or ["\x00empty"]:
        total += _word_vector(word, dims)
    norm = float(np.linalg.norm(total)) or 1.0
    return [float(x) for x in total / norm]


def _anthropic_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """Anthropic's error body (https://docs.claude.com/en/api/errors)."""
    body = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _openai_error(
    status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None
) -> Response:
    """The OpenAI-compatible error body DashScope answers in compatible mode."""
    body = {
        "error": {"message": message, "type": kind, "param": None, "code": code},
        "request_id": str(uuid.uuid4()),
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _cohere_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Cohere's error body ``{"id", "message"}`` (e.g. cohere-ai/cohere-python#614)."""
    return JSONResponse({"id": str(uuid.uuid4()), "message": message}, status_code=status, headers=headers)


def _sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return ((f"event: {event}\n" if event else "") + f"data: {text}\n\n").encode()


class DialogueSimulator:
    """The six providers (see the module docstring). ``answer[provider]``: the text the LLMs
    stream; ``keys[provider]``: the key each one accepts; ``calls``: what was sent."""

    def __init__(self, *, keys: dict[str, str] | None = None) -> None:
        self.keys = {p: f"{p}-test-key" for p in PROVIDERS} | dict(keys or {})
        self.answer = {
            p: f"Hello from {p}, happy to help with your outfit."
            for p in ("deepseek", "qwen", "gemini", "claude")
        }
        self.latency_s: dict[str, float] = dict.fromkeys(PROVIDERS, 0.0)
        self.instant = False
        self.faults: dict[str, _Fault] = {}
        self.hits: dict[str, int] = dict.fromkeys(PROVIDERS, 0)
        self.calls: list[dict[str, Any]] = []
        self.scripted: dict[str, list[tuple[int, Any, str]]] = {}
        #: Intelistyle answers these items (the client's contract is an assumption: see
        #: llm_orchestrator.providers.intelistyle)
        self.stylist_items: list[dict[str, Any]] = [
            {
                "id": "sku-1",
                "name": "Linen shirt",
                "brand": "Zara",
                "image_url": "https://img.example/1.jpg",
                "url": "https://shop.example/1",
                "price": 39.9,
                "currency": "EUR",
                "store": "Zara Gran Via",
            },
            {
                "id": "sku-2",
                "name": "Chino trousers",
                "brand": "Massimo Dutti",
                "price": 59.0,
                "currency": "EUR",
            },
        ]
        self.app = Starlette(
            routes=[
                Route("/deepseek/chat/completions", self.deepseek, methods=["POST"]),
                Route("/qwen/compatible-mode/v1/chat/completions", self.qwen, methods=["POST"]),
                Route(
                    "/gemini/v1beta/models/{model}:streamGenerateContent",
                    self.gemini_stream,
                    methods=["POST"],
                ),
                Route("/gemini/v1beta/models/{model}:generateContent", self.gemini_unary, methods=["POST"]),
                Route("/claude/v1/messages", self.claude, methods=["POST"]),
                Route("/cohere/v2/embed", self.cohere, methods=["POST"]),
                Route("/intelistyle/v3/recommendations", self.intelistyle, methods=["POST"]),
            ]
        )

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def base_urls(url: str) -> dict[str, str]:
        url = url.rstrip("/")
        return {
            "deepseek": f"{url}/deepseek",
            "qwen": f"{url}/qwen/compatible-mode/v1",
            "gemini": f"{url}/gemini",
            "claude": f"{url}/claude",
            "cohere": f"{url}/cohere",
            "intelistyle": f"{url}/intelistyle/v3",
        }

    def settings_env(self, url: str) -> dict[str, str]:
        """The llm_orchestrator settings (env names) pointing every provider at this simulator."""
        urls = self.base_urls(url)
        return {
            "DEEPSEEK_BASE_URL": urls["deepseek"],
            "DEEPSEEK_API_KEY": self.keys["deepseek"],
            "QWEN_BASE_URL": urls["qwen"],
            "QWEN_API_KEY": self.keys["qwen"],
            "GEMINI_BASE_URL": urls["gemini"],
            "GEMINI_API_KEY": self.keys["gemini"],
            "CLAUDE_BASE_URL": urls["claude"],
            "CLAUDE_API_KEY": self.keys["claude"],
            "EMBEDDING_BASE_URL": urls["cohere"],
            "EMBEDDING_API_KEY": self.keys["cohere"],
            "INTELISTYLE_API_URL": urls["intelistyle"],
            "INTELISTYLE_API_KEY": self.keys["intelistyle"],
        }

    def fault(
        self,
        provider: str,
        kind: str | None,
        *,
        times: int | None = None,
        delay_s: float = 30.0,
        interval_s: float = 0.2,
        retry_after_s: float = 1.0,
    ) -> None:
        """Inject ``kind`` into the next ``times`` calls of ``provider`` (None: every call);
        ``kind=None`` heals it."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}")
        if kind is None:
            self.faults.pop(provider, None)
            return
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(sorted(FAULTS))}")
        self.faults[provider] = _Fault(kind, times, delay_s, interval_s, retry_after_s)

    def answer_next(
        self, provider: str, status: int, body: Any, *, media_type: str = "application/json"
    ) -> None:
        """Answer the next admitted call of ``provider`` with exactly ``body`` (contract fixtures):
        a ``str`` is sent as is (an SSE stream: ``media_type="text/event-stream"``), anything else
        as JSON."""
        self.scripted.setdefault(provider, []).append((status, body, media_type))

    def _script(self, provider: str) -> Response | None:
        queue = self.scripted.get(provider)
        if not queue:
            return None
        status, body, media_type = queue.pop(0)
        if isinstance(body, str):
            return Response(body.encode(), status_code=status, media_type=media_type)
        return JSONResponse(body, status_code=status)

    def reset(self) -> None:
        self.scripted.clear()
        self.faults.clear()
        self.calls.clear()
        self.hits = dict.fromkeys(PROVIDERS, 0)
        self.latency_s = dict.fromkeys(PROVIDERS, 0.0)
        self.instant = False

    def calls_of(self, provider: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["provider"] == provider]

    # ------------------------------------------------------------------ shared plumbing

    async def _open(self, provider: str, request: Request) -> tuple[Any, Response | None]:
        """Record the call and decode its JSON body (400 when it is not JSON)."""
        self.hits[provider] += 1
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        names = (
            "authorization",
            "x-api-key",
            "x-goog-api-key",
            "anthropic-version",
            "content-type",
            "accept",
        )
        self.calls.append(
            {
                "provider": provider,
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": {k: request.headers[k] for k in names if k in request.headers},
                "json": body,
            }
        )
        if not isinstance(body, dict):
            return body, JSONResponse({"message": "request body is not a JSON object"}, status_code=400)
        return body, None

    def _take_fault(self, provider: str) -> _Fault | None:
        fault = self.faults.get(provider)
        if fault is None:
            return None
        if fault.times is not None:
            if fault.times <= 0:
                self.faults.pop(provider, None)
                return None
            fault.times -= 1
        return fault

    @staticmethod
    async def _wait(request: Request, seconds: float) -> bool:
        """Sleep ``seconds`` unless the client hangs up first (then False)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))
            if await request.is_disconnected():
                return False
        return True

    def _bearer_ok(self, provider: str, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.keys[provider]}"

    def _rate_limited(self, provider: str, fault: _Fault, model: str) -> Response:
        wait = f"{fault.retry_after_s:g}"
        if provider == "gemini":
            return gemini_rate_limited(model, fault.retry_after_s)
        if provider == "claude":
            headers = {"retry-after": wait, "retry-after-ms": f"{fault.retry_after_s * 1000:.0f}"}
            return _anthropic_error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                headers,
            )
        if provider == "deepseek":
            return deepseek_error(429, "Rate Limit Reached", "rate_limit_error", "rate_limit_reached")
        if provider == "qwen":
            return _openai_error(
                429,
                "Requests rate limit exceeded, please try again later.",
                "limit_requests",
                "limit_requests",
                {"Retry-After": wait},
            )
        if provider == "cohere":
            return _cohere_error(
                429,
                "You are past the per minute request limit, please wait and try again later.",
                {"Retry-After": wait},
            )
        return JSONResponse({"error": "rate limited"}, status_code=429, headers={"Retry-After": wait})

    @staticmethod
    def _server_error(provider: str, status: int) -> Response:
        if provider == "gemini":
            if status == 503:
                return google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
            return google_error(500, "INTERNAL", "An internal error has occurred. Please retry.")
        if provider == "claude":
            return _anthropic_error(status, "api_error", "Internal server error")
        if provider == "deepseek":
            name = "Server Overloaded" if status == 503 else "Server Error"
            return deepseek_error(status, name, "server_error", "server_error")
        if provider == "qwen":
            return _openai_error(status, "Internal server error", "internal_error", "internal_error")
        if provider == "cohere":
            return _cohere_error(status, "internal server error, this has been reported to our developers")
        return JSONResponse({"error": "internal error"}, status_code=status)

    async def _before_answer(
        self, provider: str, request: Request, fault: _Fault | None, model: str
    ) -> Response | None:
        """The faults that come instead of an answer, and the configured latency."""
        if fault is not None:
            if fault.kind == "timeout":
                await self._wait(request, fault.delay_s)
                return Response(status_code=504)
            if fault.kind == "rate_limited":
                return self._rate_limited(provider, fault, model)
            if fault.kind in ("error500", "error503"):
                return self._server_error(provider, 500 if fault.kind == "error500" else 503)
            if fault.kind == "overloaded":
                if provider == "claude":
                    return _anthropic_error(
                        529, "overloaded_error", "Overloaded", {"retry-after": f"{fault.retry_after_s:g}"}
                    )
                return self._server_error(provider, 503)
        if not self.instant and self.latency_s.get(provider, 0) > 0:
            await self._wait(request, self.latency_s[provider])
        return None

    def _chunks(self, provider: str) -> list[str]:
        text = self.answer[provider]
        if self.instant:
            return [text]
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    async def _paced(
        self, request: Request, fault: _Fault | None, pieces: list[bytes], *, first_text: int
    ) -> AsyncIterator[bytes]:
        """Yield ``pieces``; ``pieces[first_text]`` is the first one with answer text."""
        for i, piece in enumerate(pieces):
            slow = fault is not None and fault.kind == "slow_first_byte" and i == first_text
            if slow and fault is not None and not await self._wait(request, fault.delay_s):
                return
            trickle = fault is not None and fault.kind == "trickle" and i > 0
            if trickle and fault is not None and not await self._wait(request, fault.interval_s):
                return
            yield piece

    @staticmethod
    def _stream(body: AsyncIterator[bytes]) -> StreamingResponse:
        return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------ OpenAI-compatible (DeepSeek, Qwen)

    def _chat_pieces(
        self, provider: str, model: str, body: dict[str, Any], fault: _Fault | None
    ) -> tuple[list[bytes], int]:
        cid = str(uuid.uuid4())
        created = int(time.time())
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        if provider == "deepseek":
            base["system_fingerprint"] = "fp_sim"
        pieces = [b": keep-alive\n\n"] if provider == "deepseek" else []
        pieces.append(
            _sse(
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    ],
                }
            )
        )
        first_text = len(pieces)
        chunks = self._chunks(provider)
        if fault is not None and fault.kind == "malformed":
            pieces.append(b'data: {"choices": [{"delta": {"content": "Hel\n\n')
            return pieces, first_text
        for chunk in chunks:
            pieces.append(
                _sse({**base, "choices": [{"index": 0, "delta": {"content": chunk}, "finish_reason": None}]})
            )
        if fault is not None and fault.kind == "broken_stream":
            return pieces, first_text
        prompt = 20 + sum(
            len(str(m.get("content", ""))) // 4 for m in body.get("messages", []) if isinstance(m, dict)
        )
        completion = max(1, len(self.answer[provider]) // 4)
        pieces.append(
            _sse({**base, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}]})
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            pieces.append(_sse({**base, "choices": [], "usage": usage}))
        pieces.append(b"data: [DONE]\n\n")
        return pieces, first_text

    def _chat_unary(self, provider: str, model: str) -> Response:
        text = self.answer[provider]
        usage = {
            "prompt_tokens": 100,
            "completion_tokens": max(1, len(text) // 4),
            "total_tokens": 100 + max(1, len(text) // 4),
        }
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": usage,
            }
        )

    async def _chat(self, provider: str, request: Request, body: dict[str, Any]) -> Response:
        model = str(body.get("model"))
        if (scripted := self._script(provider)) is not None:
            return scripted
        fault = self._take_fault(provider)
        early = await self._before_answer(provider, request, fault, model)
        if early is not None:
            return early
        if not body.get("stream"):
            if fault is not None and fault.kind == "malformed":
                return Response(b'{"choices": [', media_type="application/json")
            return self._chat_unary(provider, model)
        pieces, first_text = self._chat_pieces(provider, model, body, fault)
        return self._stream(self._paced(request, fault, pieces, first_text=first_text))

    @staticmethod
    def _messages_error(body: dict[str, Any]) -> str | None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages must be a non-empty list"
        return None

    async def deepseek(self, request: Request) -> Response:
        body, bad = await self._open("deepseek", request)
        if bad is not None:
            return deepseek_error(
                400, "Failed to deserialize the JSON body", "invalid_request_error", "invalid_request_error"
            )
        if not self._bearer_ok("deepseek", request):
            return deepseek_error(
                401,
                "Authentication Fails (auth header format should be Bearer sk-...)",
                "authentication_error",
                "invalid_request_error",
            )
        if body.get("model") not in DEEPSEEK_MODELS:
            return deepseek_error(400, "Model Not Exist", "invalid_request_error", "invalid_request_error")
        thinking = body.get("thinking", {"type": "enabled"})
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
            return deepseek_error(
                400,
                "thinking.type must be enabled or disabled",
                "invalid_request_error",
                "invalid_request_error",
            )
        if (problem := self._messages_error(body)) is not None:
            return deepseek_error(400, problem, "invalid_request_error", "invalid_request_error")
        return await self._chat("deepseek", request, body)

    async def qwen(self, request: Request) -> Response:
        body, bad = await self._open("qwen", request)
        if bad is not None:
            return _openai_error(
                400, "The request body is not valid JSON.", "invalid_request_error", "invalid_parameter_error"
            )
        if not self._bearer_ok("qwen", request):
            return _openai_error(
                401, "Incorrect API key provided. ", "invalid_request_error", "invalid_api_key"
            )
        model = body.get("model")
        if model not in QWEN_MODELS:
            return _openai_error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        if (problem := self._messages_error(body)) is not None:
            return _openai_error(400, problem, "invalid_request_error", "invalid_parameter_error")
        if "enable_thinking" in body and not isinstance(body["enable_thinking"], bool):
            return _openai_error(
                400, "enable_thinking must be a boolean", "invalid_request_error", "invalid_parameter_error"
            )
        return await self._chat("qwen", request, body)

    # ------------------------------------------------------------------ Gemini

    def _gemini_event(self, text: str, model: str, finish: str | None, usage: dict[str, Any] | None) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        event: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": "sim"}
        if usage is not None:
            event["usageMetadata"] = usage
        return _sse(event)

    async def _gemini_admitted(self, request: Request) -> tuple[str, str, dict[str, Any], Response | None]:
        model = request.path_params["model"]
        body, bad = await self._open("gemini", request)
        if bad is not None:
            return model, "", {}, google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        level = gemini_admit(request.headers.get("x-goog-api-key"), self.keys["gemini"], model, body)
        if isinstance(level, Response):
            return model, "", body, level
        if not isinstance(body.get("contents"), list) or not body["contents"]:
            return (
                model,
                level,
                body,
                google_error(
                    400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified"
                ),
            )
        return model, level, body, None

    async def gemini_stream(self, request: Request) -> Response:
        model, level, _body, refused = await self._gemini_admitted(request)
        if refused is not None:
            return refused
        if (scripted := self._script("gemini")) is not None:
            return scripted
        fault = self._take_fault("gemini")
        early = await self._before_answer("gemini", request, fault, model)
        if early is not None:
            return early
        text = self.answer["gemini"]
        usage = gemini_usage(100, text, level)
        if request.query_params.get("alt") != "sse":  # without alt=sse: one JSON array of responses
            return JSONResponse([json.loads(self._gemini_event(text, model, "STOP", usage)[6:])])
        chunks = self._chunks("gemini")
        if fault is not None and fault.kind == "malformed":
            pieces = [b'data: {"candidates": [{"content": {"parts": [{"text": "Hel\n\n']
        else:
            partial = {"promptTokenCount": usage["promptTokenCount"]}
            pieces = [self._gemini_event(c, model, None, partial) for c in chunks[:-1]]
            if fault is None or fault.kind != "broken_stream":
                pieces.append(self._gemini_event(chunks[-1], model, "STOP", usage))
        return self._stream(self._paced(request, fault, pieces, first_text=0))

    async def gemini_unary(self, request: Request) -> Response:
        model, level, _body, refused = await self._gemini_admitted(request)
        if refused is not None:
            return refused
        if (scripted := self._script("gemini")) is not None:
            return scripted
        fault = self._take_fault("gemini")
        early = await self._before_answer("gemini", request, fault, model)
        if early is not None:
            return early
        if fault is not None and fault.kind == "malformed":
            return Response(b'{"candidates": [', media_type="application/json")
        text = self.answer["gemini"]
        return JSONResponse(
            json.loads(self._gemini_event(text, model, "STOP", gemini_usage(100, text, level))[6:])
        )

    # ------------------------------------------------------------------ Claude

    async def claude(self, request: Request) -> Response:
        body, bad = await self._open("claude", request)
        if bad is not None:
            return _anthropic_error(400, "invalid_request_error", "The request body is not valid JSON.")
        key = request.headers.get("x-api-key")
        if not key:
            return _anthropic_error(401, "authentication_error", "x-api-key header is required")
        if key != self.keys["claude"]:
            return _anthropic_error(401, "authentication_error", "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return _anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
        if version not in ANTHROPIC_VERSIONS:
            return _anthropic_error(
                400, "invalid_request_error", f"anthropic-version: invalid version {version!r}"
            )
        model = body.get("model")
        if model not in CLAUDE_MODELS:
            return _anthropic_error(404, "not_found_error", f"model: {model}")
        if not isinstance(body.get("max_tokens"), int):
            return _anthropic_error(400, "invalid_request_error", "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _anthropic_error(
                400, "invalid_request_error", "messages: at least one message is required"
            )
        if messages[-1].get("role") != "user" and CLAUDE_MODELS[model]:
            return _anthropic_error(
                400, "invalid_request_error", "This model does not support assistant message prefill."
            )
        if CLAUDE_MODELS[model]:
            for param in ("temperature", "top_p", "top_k"):
                if param in body:
                    return _anthropic_error(
                        400, "invalid_request_error", f"{param}: is not supported on this model"
                    )
        thinking = body.get("thinking")
        if thinking is not None and (not isinstance(thinking, dict) or thinking.get("type") == "enabled"):
            return _anthropic_error(
                400,
                "invalid_request_error",
                '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive"',
            )
        if (scripted := self._script("claude")) is not None:
            return scripted
        fault = self._take_fault("claude")
        early = await self._before_answer("claude", request, fault, str(model))
        if early is not None:
            return early
        text = self.answer["claude"]
        prompt = 20 + sum(len(str(m.get("content", ""))) // 4 for m in messages if isinstance(m, dict))
        completion = max(1, len(text) // 4)
        msg_id = f"msg_{uuid.uuid4().hex[:24]}"
        if not body.get("stream"):
            if fault is not None and fault.kind == "malformed":
                return Response(b'{"content": [', media_type="application/json")
            return JSONResponse(
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": prompt, "output_tokens": completion},
                }
            )
        start = {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": prompt,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        }
        pieces = [_sse(start, "message_start"), _sse({"type": "ping"}, "ping")]
        pieces.append(
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            )
        )
        first_text = len(pieces)
        if fault is not None and fault.kind == "malformed":
            pieces.append(b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {\n\n')
            return self._stream(self._paced(request, fault, pieces, first_text=first_text))
        chunks = self._chunks("claude")
        for i, chunk in enumerate(chunks):
            pieces.append(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": chunk},
                    },
                    "content_block_delta",
                )
            )
            if fault is not None and fault.kind == "midstream_overloaded" and i == 0:
                pieces.append(
                    _sse(
                        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                        "error",
                    )
                )
                return self._stream(self._paced(request, fault, pieces, first_text=first_text))
        if fault is not None and fault.kind == "broken_stream":
            return self._stream(self._paced(request, fault, pieces, first_text=first_text))
        pieces.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        pieces.append(
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": completion},
                },
                "message_delta",
            )
        )
        pieces.append(_sse({"type": "message_stop"}, "message_stop"))
        return self._stream(self._paced(request, fault, pieces, first_text=first_text))

    # ------------------------------------------------------------------ Cohere

    async def cohere(self, request: Request) -> Response:
        body, bad = await self._open("cohere", request)
        if bad is not None:
            return _cohere_error(400, "invalid request: the body is not valid JSON")
        if not self._bearer_ok("cohere", request):
            return _cohere_error(401, "invalid api token")
        model = body.get("model")
        if model not in COHERE_MODELS:
            return _cohere_error(
                404,
                f"model '{model}' not found, make sure the correct model ID was used and that you have "
                "access to the model.",
            )
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _cohere_error(400, "invalid request: texts must be a non-empty list of strings")
        if len(texts) > COHERE_MAX_TEXTS:
            return _cohere_error(
                400,
                "invalid request: total number of texts must be at most "
                f"{COHERE_MAX_TEXTS} - received {len(texts)}",
            )
        input_type = body.get("input_type")
        if input_type not in ("search_document", "search_query", "classification", "clustering"):
            return _cohere_error(
                400, "invalid request: valid input_type must be provided with the provided model"
            )
        types = body.get("embedding_types")
        if not isinstance(types, list) or not types:
            return _cohere_error(400, "invalid request: embedding_types is required")
        if any(t not in ("float", "int8", "uint8", "binary", "ubinary") for t in types):
            return _cohere_error(400, f"invalid request: embedding_types {types} not supported")
        if (scripted := self._script("cohere")) is not None:
            return scripted
        fault = self._take_fault("cohere")
        early = await self._before_answer("cohere", request, fault, str(model))
        if early is not None:
            return early
        if fault is not None and fault.kind in ("malformed", "broken_stream"):
            return Response(b'{"embeddings": {"float": [[0.1, ', media_type="application/json")
        if fault is not None and fault.kind in ("slow_first_byte", "trickle"):
            await self._wait(request, fault.delay_s if fault.kind == "slow_first_byte" else fault.interval_s)
        dims = COHERE_MODELS[str(model)]
        vectors = [hashed_embedding(t, dims) for t in texts]
        embeddings: dict[str, Any] = {}
        for kind in types:
            embeddings[kind] = (
                vectors
                if kind == "float"
                else [[max(-128, min(127, round(x * 127))) for x in v] for v in vectors]
            )
        tokens = sum(max(1, len(t) // 4) for t in texts)
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "embeddings": embeddings,
                "texts": texts,
                "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
                "response_type": "embeddings_by_type",
            }
        )

    # ------------------------------------------------------------------ Intelistyle

    async def intelistyle(self, request: Request) -> Response:
        body, bad = await self._open("intelistyle", request)
        if bad is not None:
            return JSONResponse({"error": "invalid JSON"}, status_code=400)
        if request.headers.get("x-api-key") != self.keys["intelistyle"]:
            return JSONResponse({"error": "invalid api key"}, status_code=401)
        if not isinstance(body.get("query"), str) or not body["query"].strip():
            return JSONResponse({"error": "query is required"}, status_code=400)
        if (scripted := self._script("intelistyle")) is not None:
            return scripted
        fault = self._take_fault("intelistyle")
        early = await self._before_answer("intelistyle", request, fault, "")
        if early is not None:
            return early
        if fault is not None and fault.kind in ("malformed", "broken_stream"):
            return Response(b'{"recommendations": [{"id": ', media_type="application/json")
        if fault is not None and fault.kind in ("slow_first_byte", "trickle"):
            await self._wait(request, fault.delay_s if fault.kind == "slow_first_byte" else fault.interval_s)
        limit = body.get("limit") if isinstance(body.get("limit"), int) else 6
        return JSONResponse({"recommendations": self.stylist_items[:limit]})


def main() -> None:  # pragma: no cover - run by the lab scenario (molecule/agents/prepare.yml)
    """``python -m unde_testkit.dialogue_simulators --host 198.18.0.1 --port 18090``: every provider of
    the orchestrator on one port, answering at once, with the default lab keys (``<provider>-test-key``)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="UNDE dialogue provider simulators (lab only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    args = parser.parse_args()
    sim = DialogueSimulator()
    sim.instant = True
    uvicorn.run(sim.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()
