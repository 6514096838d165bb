"""What every chat LLM client shares: the request/answer types, the error, the streamed call with
its two timeouts, the server-sent-events reader and the cost computation.

Every client streams its answer, so a provider that accepts the call but never starts answering is
told apart from one that answers slowly:

- ``first_byte_timeout_s`` runs from the start of the call until the first piece of answer text
  (not the HTTP headers, not a keep-alive comment, not Claude's ``message_start``: each of those
  can arrive while the model has not produced a word);
- ``timeout_s`` bounds the whole call, connect to the last event. A stream that keeps delivering
  text within the total passes, however slowly it trickles.

Both are enforced with one ``asyncio.timeout`` rescheduled when the first text arrives, on top of
:meth:`unde_common.http.AsyncProviderClient.stream`'s own deadline (the total), so no call ever
outlives ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError, RetryPolicy

__all__ = [
    "ChatMessage",
    "ErrorKind",
    "LLMClient",
    "LLMProviderError",
    "LLMRequest",
    "LLMResult",
    "StreamedLLMClient",
    "cost_usd",
    "error_from_status",
    "sse_events",
]

log = logging.getLogger(__name__)

Role = Literal["user", "assistant"]
#: why a call failed: ``config`` (400/401/403/404: the request, key or model id is wrong; a repeat
#: fails the same way), ``rate_limited`` (429), ``overloaded`` (529 or a mid-stream
#: ``overloaded_error``), ``server_error`` (5xx), ``timeout`` (the total passed),
#: ``first_byte_timeout`` (no answer text in time), ``connection`` (no answer at all),
#: ``malformed`` (not the documented answer: bad JSON, a broken stream, no text), ``blocked``
#: (the provider refused to answer: safety, recitation)
ErrorKind = Literal[
    "config",
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "first_byte_timeout",
    "connection",
    "malformed",
    "blocked",
]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of the conversation (the system prompt travels separately)."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """What the orchestrator asks every provider the same way. ``temperature=None``: the model's
    default (Claude Sonnet 5.5 and Gemini 3 are never sent one: see their clients)."""

    system: str
    messages: list[ChatMessage]
    max_tokens: int
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class LLMResult:
    """An answer with its usage and cost. ``first_byte_ms``: until the first answer text;
    ``total_ms``: the whole call."""

    text: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    first_byte_ms: float
    total_ms: float


class LLMProviderError(RuntimeError):
    """A provider call failed. ``retryable``: a repeat (later, or elsewhere) could succeed;
    ``False`` for ``config`` errors, which only a settings change fixes."""

    def __init__(self, provider: str, kind: ErrorKind, message: str, *, status: int | None = None) -> None:
        self.provider = provider
        self.kind: ErrorKind = kind
        self.status = status
        self.retryable = kind != "config"
        self.message = message
        what = f"HTTP {status} " if status is not None else ""
        super().__init__(f"{provider}: {what}{kind}: {message}")


def error_from_status(provider: str, status: int, message: str) -> LLMProviderError:
    """The error of an answer >= 400, classified by its status."""
    kind: ErrorKind
    if status == 429:
        kind = "rate_limited"
    elif status == 529:
        kind = "overloaded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "config"
    return LLMProviderError(provider, kind, message, status=status)


def _from_provider_error(provider: str, exc: ProviderError) -> LLMProviderError:
    detail = exc.reason + (f": {exc.body[:300]}" if exc.body else "")
    if exc.status is not None:
        return error_from_status(provider, exc.status, detail)
    if exc.reason.startswith("deadline"):
        return LLMProviderError(provider, "timeout", exc.reason)
    return LLMProviderError(provider, "connection", exc.reason)


def cost_usd(input_tokens: int, output_tokens: int, price_in_per_1m: float, price_out_per_1m: float) -> float:
    """USD of one call from its usage and the per-million-token prices."""
    return (input_tokens * price_in_per_1m + output_tokens * price_out_per_1m) / 1_000_000


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` of each server-sent event (https://html.spec.whatwg.org/multipage/
    server-sent-events.html#event-stream-interpretation): ``data:`` lines joined by newlines,
    ``event:`` names it ("message" when absent), ``:`` lines are comments (DeepSeek's
    ``: keep-alive`` while it queues a request), a blank line ends an event; an event cut by the
    end of the stream is still delivered."""
    event, data = "", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)


def parse_json_event(provider: str, data: str) -> Any:
    """One event's JSON payload; LLMProviderError ``malformed`` when it is not JSON."""
    try:
        return json.loads(data)
    except ValueError:
        raise LLMProviderError(provider, "malformed", f"stream event is not JSON: {data[:120]!r}") from None


@dataclass(slots=True)
class StreamState:
    """What a stream parser collects: the text pieces, the usage, whether the stream finished the
    documented way (a stream cut before its end marker is malformed, not an answer)."""

    parts: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    finished: bool = False
    #: set by the client when the first answer text arrives (reschedules the timeout)
    on_text: Any = None
    #: the caller's receiver of each answer piece as it arrives (the sentence stream)
    on_piece: Callable[[str], None] | None = None

    def text(self, piece: str) -> None:
        if not piece:
            return
        if not self.parts and self.on_text is not None:
            self.on_text()
        self.parts.append(piece)
        if self.on_piece is not None:
            self.on_piece(piece)


class LLMClient(Protocol):
    """One chat provider as the router sees it."""

    name: str
    model: str

    async def complete(
        self,
        request: LLMRequest,
        *,
        timeout_s: float,
        first_byte_timeout_s: float,
        on_text: Callable[[str], None] | None = None,
    ) -> LLMResult: ...

    async def aclose(self) -> None: ...


def http_config(
    name: str, base_url: str, headers: dict[str, str], *, max_connections: int = 50
) -> ProviderConfig:
    """A streaming provider's transport: no retries (the router falls back instead), timeouts set
    per call from the router's budget."""
    return ProviderConfig(
        name=name,
        base_url=base_url.rstrip("/"),
        connect_timeout_s=3.0,
        read_timeout_s=30.0,
        write_timeout_s=10.0,
        pool_timeout_s=2.0,
        retry=RetryPolicy(max_attempts=1),
        headers=headers,
        max_connections=max_connections,
    )


class StreamedLLMClient:
    """Base of the four clients: a subclass builds the request (:meth:`build`) and reads the
    events (:meth:`consume`); this class runs the call with both timeouts, maps failures to
    :class:`LLMProviderError` and prices the usage."""

    name = "llm"

    def __init__(
        self,
        model: str,
        config: ProviderConfig,
        *,
        price_in_per_1m: float,
        price_out_per_1m: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.price_in_per_1m = price_in_per_1m
        self.price_out_per_1m = price_out_per_1m
        self.http = AsyncProviderClient(config, transport=transport)

    def build(self, request: LLMRequest) -> tuple[str, dict[str, Any], dict[str, str]]:
        """``(path with query, JSON body, extra headers)`` of the streamed call."""
        raise NotImplementedError

    async def consume(self, response: httpx.Response, state: StreamState) -> None:
        """Read the stream into ``state``; raise LLMProviderError for an error event."""
        raise NotImplementedError

    async def complete(
        self,
        request: LLMRequest,
        *,
        timeout_s: float,
        first_byte_timeout_s: float,
        on_text: Callable[[str], None] | None = None,
    ) -> LLMResult:
        """The streamed call; ``on_text`` receives each answer piece as it arrives (a failed call
        may have delivered some: the caller drops them)."""
        if timeout_s <= 0:
            raise LLMProviderError(self.name, "timeout", "no time left for the call")
        path, body, headers = self.build(request)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        first_at: list[float] = []
        scope = asyncio.timeout(min(first_byte_timeout_s, timeout_s))

        def first_text() -> None:
            first_at.append(time.monotonic())
            scope.reschedule(loop.time() + max(0.0, timeout_s - (first_at[0] - started)))

        state = StreamState(on_text=first_text, on_piece=on_text)
        try:
            async with (
                scope,
                self.http.stream("POST", path, json=body, headers=headers, deadline_s=timeout_s) as resp,
            ):
                await self.consume(resp, state)
        except TimeoutError:
            if not first_at:
                raise LLMProviderError(
                    self.name, "first_byte_timeout", f"no answer text within {first_byte_timeout_s:g}s"
                ) from None
            raise LLMProviderError(
                self.name, "timeout", f"answer not complete within {timeout_s:g}s"
            ) from None
        except ProviderError as exc:
            if exc.status is None and exc.reason.startswith("deadline") and not first_at:
                raise LLMProviderError(
                    self.name, "first_byte_timeout", f"no answer text within {timeout_s:g}s"
                ) from exc
            raise _from_provider_error(self.name, exc) from exc
        total = time.monotonic() - started
        text = "".join(state.parts).strip()
        if not state.finished:
            raise LLMProviderError(self.name, "malformed", "the stream ended before its end marker")
        if not text:
            raise LLMProviderError(self.name, "malformed", "the answer has no text")
        if state.input_tokens is None or state.output_tokens is None:
            log.warning("provider reported no usage; cost counted as 0", extra={"provider": self.name})
        tokens_in, tokens_out = state.input_tokens or 0, state.output_tokens or 0
        return LLMResult(
            text=text,
            provider=self.name,
            model=self.model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_usd=cost_usd(tokens_in, tokens_out, self.price_in_per_1m, self.price_out_per_1m),
            first_byte_ms=round((first_at[0] - started) * 1000, 1) if first_at else round(total * 1000, 1),
            total_ms=round(total * 1000, 1),
        )

    async def aclose(self) -> None:
        await self.http.aclose()
