"""The mood classifier with a hard latency budget.

``context`` mode: the primary LLM (DeepSeek) is asked first; if it has not answered after
``hedge_after_s`` (or failed), the fallback (Gemini) is asked too; the first valid answer within
``budget_s`` wins. When neither answers in time, or both fail, the local lexicon classifier
answers — so the endpoint always meets its latency. ``signal`` mode uses the lexicon only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from mood_agent.clients import MoodLLM
from mood_agent.lexicon import Classification, classify

__all__ = ["HedgedClassifier", "Verdict"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Verdict:
    result: Classification
    source: str
    errors: list[str] = field(default_factory=list)


class HedgedClassifier:
    def __init__(self, llms: Sequence[MoodLLM], *, budget_s: float, hedge_after_s: float) -> None:
        self.llms = list(llms)
        self.budget_s = budget_s
        self.hedge_after_s = hedge_after_s

    async def classify(self, text: str, mode: str = "context") -> Verdict:
        if mode == "signal" or not self.llms:
            return Verdict(classify(text), "lexicon")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget_s
        errors: list[str] = []
        pending: dict[asyncio.Task[Classification], str] = {}

        def start(llm: MoodLLM) -> None:
            remaining = max(0.001, deadline - loop.time())
            pending[asyncio.create_task(llm.classify(text, remaining))] = llm.name

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
                    start(queue.pop(0))
                    next_hedge = loop.time() + self.hedge_after_s
            for name in pending.values():
                errors.append(f"{name}: no answer within {self.budget_s * 1000:.0f} ms")
        finally:
            for task in pending:
                task.cancel()
        return Verdict(classify(text), "lexicon", errors)

    async def aclose(self) -> None:
        for llm in self.llms:
            await llm.aclose()
