"""The LLM router: the dialogue's providers in the order of the settings (``llm_primary_provider``,
then ``llm_fallback_providers``), tried one after the other under ONE deadline for the chain.

- Each attempt gets ``min(llm_timeout, time left)`` in total and ``min(llm_first_byte_timeout_s,
  that)`` until its first answer text (see :mod:`llm_orchestrator.providers.base`), so the chain
  never runs past ``deadline`` (a ``time.monotonic()`` value): no attempt starts with less than
  ``min_attempt_s`` left, and each is cut at the deadline.
- Any failure moves on to the next provider: 5xx, 429, 529 / ``overloaded_error``, a timeout, a
  malformed or empty answer, a refusal, and also a 400/401/403/404 — a configuration error (wrong
  key, retired model id) that no retry fixes, logged at error level so it is noticed, while the
  user still gets an answer from the next provider. A failed attempt is never repeated on the
  same provider: the next one is a better use of the time left.
- Every attempt is recorded (:class:`Attempt`: provider, outcome, ms, status) and handed to the
  optional ``on_attempt`` callback; the caller owns the metrics
  (``llm_orchestrator_provider_fallbacks`` = ``RouterResult.fallbacks``,
  ``llm_orchestrator_cost_usd`` = ``RouterResult.result.cost_usd`` by provider).
- When every provider failed (or no time was left for the next) :class:`AllProvidersFailed`
  carries the attempts; the orchestrator answers from its template then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from llm_orchestrator.providers.base import ErrorKind, LLMClient, LLMProviderError, LLMRequest, LLMResult
from llm_orchestrator.providers.settings import Provider, ProviderSettings

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "LLMRouter",
    "RouterResult",
    "TextSink",
    "build_client",
    "build_router",
]

log = logging.getLogger(__name__)

#: the router's backstop fires this much after the client's own total timeout
_GRACE_S = 0.05

Outcome = Literal["ok", "no_time"] | ErrorKind


@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider's turn in the chain. ``outcome``: ``ok``, an :data:`ErrorKind`, or ``no_time``
    (skipped: the deadline left too little to start it)."""

    provider: str
    outcome: Outcome
    ms: float
    status: int | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class RouterResult:
    result: LLMResult
    attempts: list[Attempt]

    @property
    def fallbacks(self) -> int:
        """How many providers failed before the one that answered."""
        return len(self.attempts) - 1


class AllProvidersFailed(RuntimeError):  # noqa: N818 - the name the orchestrator uses
    def __init__(self, attempts: list[Attempt]) -> None:
        self.attempts = attempts
        summary = ", ".join(f"{a.provider}: {a.outcome}" for a in attempts) or "no providers"
        super().__init__(f"every LLM provider failed ({summary})")


class TextSink(Protocol):
    """Receives the answer while it streams: ``text`` for each piece, ``reset`` when an attempt
    failed (whatever it delivered is void; the next provider starts over)."""

    def text(self, piece: str) -> None: ...

    def reset(self) -> None: ...


def build_client(provider: Provider | str, settings: ProviderSettings) -> LLMClient:
    """The real client of one provider, from the settings."""
    from llm_orchestrator.providers.claude import ClaudeClient
    from llm_orchestrator.providers.deepseek import DeepSeekClient
    from llm_orchestrator.providers.gemini import GeminiClient
    from llm_orchestrator.providers.qwen import QwenClient

    if provider == "deepseek":
        return DeepSeekClient.from_settings(settings)
    if provider == "gemini":
        return GeminiClient.from_settings(settings)
    if provider == "claude":
        return ClaudeClient.from_settings(settings)
    if provider == "qwen":
        return QwenClient.from_settings(settings)
    raise ValueError(f"unknown LLM provider {provider!r}")


class LLMRouter:
    """Tries ``clients`` in order under one deadline. ``llm_timeout_s`` caps one attempt,
    ``first_byte_timeout_s`` its wait for the first answer text."""

    def __init__(
        self,
        clients: Sequence[LLMClient],
        *,
        llm_timeout_s: float,
        first_byte_timeout_s: float,
        min_attempt_s: float = 0.2,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        if not clients:
            raise ValueError("the router needs at least one provider")
        self.clients = list(clients)
        self.llm_timeout_s = llm_timeout_s
        self.first_byte_timeout_s = first_byte_timeout_s
        self.min_attempt_s = min_attempt_s
        self.on_attempt = on_attempt

    @classmethod
    def from_settings(
        cls, settings: ProviderSettings, *, on_attempt: Callable[[Attempt], None] | None = None
    ) -> LLMRouter:
        order: list[str] = [settings.llm_primary_provider]
        order += [p for p in settings.llm_fallback_providers if p not in order]
        return cls(
            [build_client(p, settings) for p in order],
            llm_timeout_s=settings.llm_timeout,
            first_byte_timeout_s=settings.llm_first_byte_timeout_s,
            min_attempt_s=settings.llm_min_attempt_s,
            on_attempt=on_attempt,
        )

    @property
    def providers(self) -> list[str]:
        return [c.name for c in self.clients]

    def _record(self, attempts: list[Attempt], attempt: Attempt) -> None:
        attempts.append(attempt)
        if self.on_attempt is not None:
            self.on_attempt(attempt)

    async def complete(
        self, request: LLMRequest, *, deadline: float, sink: TextSink | None = None
    ) -> RouterResult:
        """The first provider's answer that completes; ``sink`` sees the pieces as they stream and
        a ``reset`` after each failed attempt."""
        attempts: list[Attempt] = []
        on_text = sink.text if sink is not None else None
        for client in self.clients:
            left = deadline - time.monotonic()
            if left < self.min_attempt_s:
                self._record(
                    attempts, Attempt(client.name, "no_time", 0.0, error=f"{max(left, 0):.3f}s left")
                )
                continue
            timeout_s = min(self.llm_timeout_s, left)
            # the client's own limits end its call a moment before the router's backstop does, so
            # the outcome is the client's (first byte or total); the backstop is for a client that
            # ignores its limits
            client_s = max(timeout_s - _GRACE_S, timeout_s / 2)
            first_byte_s = min(self.first_byte_timeout_s, client_s)
            started = time.monotonic()
            try:
                async with asyncio.timeout(timeout_s):
                    result = await client.complete(
                        request, timeout_s=client_s, first_byte_timeout_s=first_byte_s, on_text=on_text
                    )
            except LLMProviderError as exc:
                self._failed(attempts, client.name, exc.kind, started, exc.status, exc.message, sink)
                continue
            except TimeoutError:
                self._failed(
                    attempts, client.name, "timeout", started, None, f"cut at {timeout_s:.2f}s", sink
                )
                continue
            except Exception as exc:  # a client bug or an answer shape nobody expected: next provider
                log.exception("LLM client failed unexpectedly", extra={"provider": client.name})
                self._failed(
                    attempts, client.name, "malformed", started, None, f"{type(exc).__name__}: {exc}", sink
                )
                continue
            self._record(attempts, Attempt(client.name, "ok", _ms(started)))
            return RouterResult(result, attempts)
        raise AllProvidersFailed(attempts)

    def _failed(
        self,
        attempts: list[Attempt],
        provider: str,
        kind: ErrorKind,
        started: float,
        status: int | None,
        error: str,
        sink: TextSink | None = None,
    ) -> None:
        if sink is not None:
            sink.reset()
        attempt = Attempt(provider, kind, _ms(started), status, error[:300])
        extra = {
            "provider": provider,
            "outcome": kind,
            "status": status,
            "ms": attempt.ms,
            "error": attempt.error,
        }
        if kind == "config":
            log.error("LLM provider refused the request: check its key and model id", extra=extra)
        else:
            log.warning("LLM provider failed, trying the next", extra=extra)
        self._record(attempts, attempt)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients), return_exceptions=True)


def build_router(
    settings: ProviderSettings, *, on_attempt: Callable[[Attempt], None] | None = None
) -> LLMRouter:
    """:meth:`LLMRouter.from_settings`."""
    return LLMRouter.from_settings(settings, on_attempt=on_attempt)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
