"""Clients of the three dialogue agents (mood, context, persona) as the orchestrator calls them.

The orchestrator is the one owner of the agent calls of a turn: it calls mood ``POST /analyze``
and context ``POST /context`` itself, in parallel with the query embedding and the shard reads,
then persona ``POST /persona`` with both frames. Each agent call has its own budget
(``MOOD_TIMEOUT_S`` 0.3 s, ``CONTEXT_TIMEOUT_S`` 0.15 s, ``PERSONA_TIMEOUT_S``); past it, or on any
error, the turn goes on with the last frame this orchestrator received for the user (kept in its own
Redis DB, ``orch:frame:<kind>:<user_id>``, ``FRAME_TTL_S``) or, when there is none, the default
frame; ``llm_orchestrator_agent_fallbacks_total{agent,reason}`` counts each. An agent is never a
reason to fail a turn.

Calls go through :func:`unde_common.http.service_config` clients: they carry the orchestrator's
``SERVICE_TOKEN`` (the agents accept only their registered callers) and are never retried inside
the budget (a repeat would not fit).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from unde_common.http import AsyncProviderClient, ProviderError, service_config

__all__ = ["DEFAULT_MOOD_FRAME", "DEFAULT_VOICE_PARAMS", "AgentCall", "AgentClients", "FrameStore"]

log = logging.getLogger(__name__)

#: the frame a turn uses when the mood agent does not answer and no earlier frame is known: neutral
#: (valence/arousal/dominance of persona's defaults), no signals, no topic shift
DEFAULT_MOOD_FRAME: dict[str, Any] = {
    "mood_frame_id": None,
    "emotion": {"valence": 0.5, "arousal": 0.4, "dominance": 0.5},
    "signals": {"frustration": 0.0, "urgency": 0.0, "confidence": 0.7, "fatigue": 0.0},
    "topic": {
        "shift_detected": False,
        "emotional_reversal": False,
        "thread_break": False,
        "action": "continue",
    },
    "source": "default",
}
#: voice parameters when persona does not answer (the voice server's neutral voice)
DEFAULT_VOICE_PARAMS: dict[str, Any] = {
    "warmth": 0.6,
    "tempo": 1.0,
    "tension": 0.2,
    "expressiveness": "moderate",
}


@dataclass(slots=True)
class AgentCall:
    """One agent's answer for a turn: ``value`` (the frame or persona output, possibly a fallback),
    ``source`` (``agent`` | ``last`` | ``default``), ``reason`` of a fallback, time spent."""

    value: dict[str, Any] | None
    source: str
    reason: str | None = None
    ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class FrameStore:
    """The last mood / context frame this orchestrator received per user (its own Redis DB)."""

    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    @staticmethod
    def key(kind: str, user_id: UUID) -> str:
        return f"orch:frame:{kind}:{user_id}"

    async def last(self, kind: str, user_id: UUID) -> dict[str, Any] | None:
        try:
            raw = await self.redis.get(self.key(kind, user_id))
        except Exception as exc:  # the cache is a help, never a reason to fail the turn
            log.warning("frame cache unreadable", extra={"kind": kind, "error": type(exc).__name__})
            return None
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def remember(self, kind: str, user_id: UUID, frame: dict[str, Any]) -> None:
        try:
            await self.redis.set(
                self.key(kind, user_id), json.dumps(frame, separators=(",", ":")), ex=self.ttl_s
            )
        except Exception as exc:
            log.warning("frame cache not written", extra={"kind": kind, "error": type(exc).__name__})


def _failure(agent: str, exc: Exception) -> str:
    """Why an agent call gave no usable answer (the ``reason`` label of the fallback counter)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ProviderError):
        return "timeout" if exc.status is None else f"http_{exc.status}"
    if isinstance(exc, ValueError | TypeError):
        log.warning("agent answer refused", extra={"agent": agent, "error": str(exc)[:200]})
        return "malformed"
    # connection refused, TLS, ...
    log.warning("agent unreachable", extra={"agent": agent, "error": type(exc).__name__})
    return "unreachable"


class AgentClients:
    """HTTP clients of mood, context and persona with their per-call budgets."""

    def __init__(
        self,
        settings: Any,
        frames: FrameStore,
        *,
        on_fallback: Any = None,
    ) -> None:
        self.settings = settings
        self.frames = frames
        self._on_fallback = on_fallback
        s = settings
        self.mood = AsyncProviderClient(service_config(s, "mood_agent", str(s.mood_agent_url)))
        self.context = AsyncProviderClient(service_config(s, "context_agent", str(s.context_agent_url)))
        self.persona = AsyncProviderClient(service_config(s, "persona_agent", str(s.persona_agent_url)))
        self._contract = {"x-persona-contract": s.persona_contract_version}

    async def aclose(self) -> None:
        await asyncio.gather(self.mood.aclose(), self.context.aclose(), self.persona.aclose())

    def _fallback(self, agent: str, reason: str) -> None:
        if self._on_fallback is not None:
            self._on_fallback(agent, reason)

    async def _post(
        self, client: AsyncProviderClient, path: str, body: dict[str, Any], budget_s: float, **kw: Any
    ) -> dict[str, Any]:
        answer = await asyncio.wait_for(
            client.post_json(path, json=body, retry=False, deadline_s=budget_s, **kw), timeout=budget_s
        )
        if not isinstance(answer, dict):
            raise ValueError(f"{path} answered {type(answer).__name__}, not an object")
        return answer

    async def _frame(
        self, kind: str, agent: str, user_id: UUID, call: Any, pick: str, budget_s: float
    ) -> AgentCall:
        start = time.perf_counter()
        try:
            answer = await call(budget_s)
            frame = answer.get(pick) if pick else answer
            if not isinstance(frame, dict):
                raise ValueError(f"answer has no {pick!r} object")
            await self.frames.remember(kind, user_id, frame)
            return AgentCall(frame, "agent", ms=(time.perf_counter() - start) * 1000, extra=answer)
        except Exception as exc:
            reason = _failure(agent, exc)
        self._fallback(agent, reason)
        last = await self.frames.last(kind, user_id)
        ms = (time.perf_counter() - start) * 1000
        if last is not None:
            return AgentCall(last, "last", reason, ms)
        return AgentCall(DEFAULT_MOOD_FRAME if kind == "mood" else None, "default", reason, ms)

    async def mood_frame(self, user_id: UUID, text: str, input_type: str) -> AgentCall:
        body: dict[str, Any] = {"user_id": str(user_id), "text": text[:4000], "mode": "context"}

        async def call(budget: float) -> dict[str, Any]:
            return await self._post(self.mood, "/analyze", body, budget)

        return await self._frame(
            "mood", "mood_agent", user_id, call, "mood_frame", self.settings.mood_timeout_s
        )

    async def context_frame(
        self, user_id: UUID, location: dict[str, Any] | None, compact_preferences: dict[str, Any]
    ) -> AgentCall:
        if not location or location.get("lat") is None or location.get("lng") is None:
            # no position from the client: the last frame (or none) — not an agent failure
            last = await self.frames.last("context", user_id)
            return AgentCall(last, "last" if last else "default", "no_location")
        body = {
            "user_id": str(user_id),
            "lat": location["lat"],
            "lng": location["lng"],
            "compact_preferences": compact_preferences,
        }
        for key in ("mall_id", "floor"):
            if location.get(key) is not None:
                body[key] = location[key]

        async def call(budget: float) -> dict[str, Any]:
            return await self._post(self.context, "/context", body, budget)

        return await self._frame(
            "context", "context_agent", user_id, call, "", self.settings.context_timeout_s
        )

    async def persona_output(self, body: dict[str, Any]) -> AgentCall:
        start = time.perf_counter()
        try:
            answer = await self._post(
                self.persona, "/persona", body, self.settings.persona_timeout_s, headers=self._contract
            )
            return AgentCall(answer, "agent", ms=(time.perf_counter() - start) * 1000)
        except Exception as exc:
            reason = _failure("persona_agent", exc)
        self._fallback("persona_agent", reason)
        return AgentCall(None, "default", reason, (time.perf_counter() - start) * 1000)

    async def feedback_and_flush(
        self, user_id: UUID, exchange_id: str, signals: list[dict[str, Any]]
    ) -> bool:
        """``POST /persona/feedback`` for each signal, then ``POST /persona/flush`` once for the
        exchange (persona makes both idempotent: signal_id and exchange_id). False when persona did
        not take them (logged; the exchange's signals are lost, the dialogue is not)."""
        budget = self.settings.persona_feedback_timeout_s
        try:
            for signal in signals:
                await self._post(
                    self.persona,
                    "/persona/feedback",
                    {"user_id": str(user_id), "exchange_id": exchange_id, **signal},
                    budget,
                    headers=self._contract,
                )
            await self._post(
                self.persona,
                "/persona/flush",
                {"user_id": str(user_id), "exchange_id": exchange_id},
                budget,
                headers=self._contract,
            )
            return True
        except Exception as exc:
            log.warning(
                "persona feedback not delivered",
                extra={"exchange_id": exchange_id, "error": type(exc).__name__, "detail": str(exc)[:200]},
            )
            self._fallback("persona_feedback", "error")
            return False
