"""SignalBuffer: signals buffered per exchange_id (in Redis), resolved at flush time.

Resolution (pure, :func:`resolve_signals`): duplicates of a type count once; the rest form a
conflict graph (edges: :data:`persona_contract.signals.CONFLICTS`) whose connected components are
resolved separately — conservative signals win every component they are in; a component of
conflicting signals without a conservative one is discarded (ambiguous). Signals order by
(received_at, signal_id), so the result does not depend on arrival order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from persona_contract.signals import CONSERVATIVE_SIGNALS, conflicts_with

__all__ = ["BufferedSignal", "RedisSignalBuffer", "Resolution", "resolve_signals"]

BUFFER_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class BufferedSignal:
    signal_id: str
    exchange_id: str
    signal_type: str
    strength: float
    received_at: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "signal_id": self.signal_id,
                "exchange_id": self.exchange_id,
                "signal_type": self.signal_type,
                "strength": self.strength,
                "received_at": self.received_at,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> BufferedSignal:
        d: dict[str, Any] = json.loads(raw)
        return cls(
            d["signal_id"], d["exchange_id"], d["signal_type"], float(d["strength"]), float(d["received_at"])
        )


@dataclass(frozen=True, slots=True)
class Resolution:
    kept: tuple[BufferedSignal, ...]
    discarded: tuple[tuple[BufferedSignal, str], ...]


def _components(signals: Sequence[BufferedSignal]) -> list[list[BufferedSignal]]:
    parent = list(range(len(signals)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(signals)):
        for j in range(i + 1, len(signals)):
            if conflicts_with(signals[i].signal_type, signals[j].signal_type):
                parent[find(i)] = find(j)
    groups: dict[int, list[BufferedSignal]] = {}
    for i, sig in enumerate(signals):
        groups.setdefault(find(i), []).append(sig)
    return sorted(groups.values(), key=lambda g: (g[0].received_at, g[0].signal_id))


def resolve_signals(signals: Sequence[BufferedSignal]) -> Resolution:
    ordered = sorted(signals, key=lambda s: (s.exchange_id, s.received_at, s.signal_id))
    unique: list[BufferedSignal] = []
    discarded: list[tuple[BufferedSignal, str]] = []
    seen: set[tuple[str, str]] = set()
    for sig in ordered:
        key = (sig.exchange_id, sig.signal_type)
        if key in seen:
            discarded.append((sig, "duplicate"))
            continue
        seen.add(key)
        unique.append(sig)
    kept: list[BufferedSignal] = []
    by_exchange: dict[str, list[BufferedSignal]] = {}
    for sig in unique:
        by_exchange.setdefault(sig.exchange_id, []).append(sig)
    for exchange in sorted(by_exchange):
        for component in _components(by_exchange[exchange]):
            if len(component) == 1:
                kept.extend(component)
                continue
            conservative = [s for s in component if s.signal_type in CONSERVATIVE_SIGNALS]
            if conservative:
                kept.extend(conservative)
                discarded.extend(
                    (s, "conflict:conservative_wins") for s in component if s not in conservative
                )
            else:
                discarded.extend((s, "conflict:ambiguous") for s in component)
    return Resolution(tuple(kept), tuple(discarded))


class RedisSignalBuffer:
    """``persona:buf:{user}:{exchange}`` (hash signal_id → signal) and ``persona:bufidx:{user}``
    (sorted set exchange → first arrival), both expiring after 24 h."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    @staticmethod
    def _key(user_id: str, exchange_id: str) -> str:
        return f"persona:buf:{user_id}:{exchange_id}"

    @staticmethod
    def _index(user_id: str) -> str:
        return f"persona:bufidx:{user_id}"

    async def add(self, user_id: str, sig: BufferedSignal) -> bool:
        """False when this signal_id is already buffered."""
        key = self._key(user_id, sig.exchange_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(key, sig.signal_id, sig.to_json())
        pipe.expire(key, BUFFER_TTL_S)
        pipe.zadd(self._index(user_id), {sig.exchange_id: sig.received_at}, nx=True)
        pipe.expire(self._index(user_id), BUFFER_TTL_S)
        added, *_ = await pipe.execute()
        return bool(added)

    async def take(
        self, user_id: str, exchange_id: str, stale_after_s: float
    ) -> tuple[list[BufferedSignal], list[str]]:
        """The signals of ``exchange_id`` plus those of exchanges older than ``stale_after_s``
        (and the names of those stale exchanges). Nothing is deleted: call :meth:`drop` after the
        signals are applied, so a failed flush can be retried."""
        cutoff = time.time() - stale_after_s
        stale = [
            (m.decode() if isinstance(m, bytes) else str(m))
            for m in await self.r.zrangebyscore(self._index(user_id), "-inf", cutoff)
        ]
        stale = [e for e in stale if e != exchange_id]
        signals: list[BufferedSignal] = []
        for exchange in [exchange_id, *stale]:
            values = await self.r.hvals(self._key(user_id, exchange))
            signals.extend(BufferedSignal.from_json(v) for v in values)
        return signals, stale

    async def drop(self, user_id: str, exchanges: Sequence[str]) -> None:
        if not exchanges:
            return
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(*(self._key(user_id, e) for e in exchanges))
        pipe.zrem(self._index(user_id), *exchanges)
        await pipe.execute()
