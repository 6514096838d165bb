"""The mood classifier with a hard latency budget.

``context`` mode: the primary LLM (DeepSeek) is asked first; if it has not answered after
``hedge_after_s`` (or failed), the fallback (Gemini) is asked too; the first valid answer within
the budget wins. The budget is one hard deadline for both providers together (``budget_s``, or
less when the caller passes what is left of its request deadline); when neither answers in time,
or both fail, the local lexicon classifier answers — so the endpoint meets its latency by
construction. ``signal`` mode uses the lexicon only.

Overload: at most ``max_inflight`` LLM calls run at once per process, and none is started while
the event loop lags more than ``shed_lag_s`` behind (:class:`LoopLag`: the process is short of CPU,
so an LLM call — ~3 ms of CPU in httpx per call — would only deepen the queue). Such a request does
not queue: it is answered by the lexicon at once, with ``shed`` in its errors (queueing is what made
p95 grow without bound under load); a hedge is only started while there is room too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from mood_agent.clients import MoodLLM
from mood_agent.lexicon import Classification, classify

__all__ = ["HedgedClassifier", "LoopLag", "Verdict"]

log = logging.getLogger(__name__)


class LoopLag:
    """How far this process's event loop runs behind: a task asks to wake every ``every_s``; the
    overshoot, decayed (each sample may lower it by ``decay``), is :attr:`lag_s`."""

    def __init__(self, every_s: float = 0.005, decay: float = 0.7) -> None:
        self.every_s = every_s
        self.decay = decay
        self.lag_s = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.every_s)
            overshoot = max(0.0, loop.time() - start - self.every_s)
            self.lag_s = max(overshoot, self.lag_s * self.decay)


@dataclass(slots=True)
class Verdict:
    result: Classification
    source: str
    errors: list[str] = field(default_factory=list)


class HedgedClassifier:
    def __init__(
        self,
        llms: Sequence[MoodLLM],
        *,
        budget_s: float,
        hedge_after_s: float,
        max_inflight: int = 32,
        min_budget_s: float = 0.005,
        lag: LoopLag | None = None,
        shed_lag_s: float = 0.02,
    ) -> None:
        self.llms = list(llms)
        self.budget_s = budget_s
        self.hedge_after_s = hedge_after_s
        self.max_inflight = max_inflight
        self.min_budget_s = min_budget_s
        self.inflight = 0
        self.lag = lag
        self.shed_lag_s = shed_lag_s

    def _done(self, _: object) -> None:
        self.inflight -= 1

    async def classify(self, text: str, mode: str = "context", *, budget_s: float | None = None) -> Verdict:
        if mode == "signal" or not self.llms:
            return Verdict(classify(text), "lexicon")
        budget = self.budget_s if budget_s is None else min(self.budget_s, budget_s)
        if budget < self.min_budget_s:
            return Verdict(classify(text), "lexicon", [f"shed: request deadline left {budget * 1000:.0f} ms"])
        if self.inflight >= self.max_inflight:
            return Verdict(classify(text), "lexicon", [f"shed: {self.inflight} LLM calls in flight"])
        if self.lag is not None and self.lag.lag_s > self.shed_lag_s:
            return Verdict(
                classify(text), "lexicon", [f"shed: event loop {self.lag.lag_s * 1000:.0f} ms behind"]
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        errors: list[str] = []
        pending: dict[asyncio.Task[Classification], str] = {}

        def start(llm: MoodLLM) -> None:
            remaining = max(0.001, deadline - loop.time())
            task = asyncio.create_task(llm.classify(text, remaining))
            self.inflight += 1
            task.add_done_callback(self._done)
            pending[task] = llm.name

        queue = list(self.llms)
        start(queue.pop(0))
        next_hedge = loop.time() + self.hedge_after_s
        try:
            while pending:
                now = loop.time()
                if now >= deadline:
                    break
                wait_until = min(deadline, next_hedge) if queue else deadline
                done, _ = await asyncio.wait(
                    pending, timeout=max(0.0, wait_until - now), return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    name = pending.pop(task)
                    exc = task.exception()
                    if exc is None:
                        return Verdict(task.result(), name, errors)
                    errors.append(f"{name}: {exc.__class__.__name__}: {str(exc)[:200]}")
                if queue and (loop.time() >= next_hedge or not pending):
                    if self.inflight < self.max_inflight:
                        start(queue.pop(0))
                    elif not pending:
                        errors.append(f"shed: {self.inflight} LLM calls in flight, no fallback asked")
                        break
                    next_hedge = loop.time() + self.hedge_after_s
            for name in pending.values():
                errors.append(f"{name}: no answer within {budget * 1000:.0f} ms")
        finally:
            for task in pending:
                task.cancel()
        return Verdict(classify(text), "lexicon", errors)

    async def aclose(self) -> None:
        for llm in self.llms:
            await llm.aclose()
