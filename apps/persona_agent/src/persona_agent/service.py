"""PersonaService: state loading (LRU of 100 profiles, validated by a Redis version counter),
the rule engine, the signal buffer, feedback application and idempotency.

Cache validation: every flush increments ``persona:ver:<user>`` and publishes ``<user> <version>``
on :data:`INVALIDATION_CHANNEL` (one MULTI). Each worker runs :meth:`PersonaService.track_invalidations`;
while its subscription is confirmed and alive, a cached profile is served without touching Redis
and an invalidation drops it. Before the subscription is confirmed, or after it broke (Redis down,
no PONG within ``tracking_stale_s``), every lookup reads the version key again (the pre-tracking
behaviour), and the cache is emptied when the subscription comes back (messages may have been lost).

Failure behaviour: when the shard is unreachable ``/persona`` answers from the cache or from the
defaults (``debug.state_source`` says which) and stops trying the shard for
``db_retry_after_s``; ``/persona/feedback`` and ``/persona/flush`` need Redis and the shard and
answer 503 without losing buffered signals (a flush that failed can be repeated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from persona_agent.concurrency import UserLocks
from persona_agent.db import PersonaStore
from persona_agent.engine import decide
from persona_agent.feedback_processor import FeedbackOutcome, apply_signals
from persona_agent.idempotency import Idempotency
from persona_agent.models import FeedbackRequest, FlushRequest, PersonaRequest
from persona_agent.signal_buffer import BufferedSignal, RedisSignalBuffer, resolve_signals
from persona_agent.state import UserState, effective_stage
from unde_common.metrics import AppMetrics

__all__ = ["INVALIDATION_CHANNEL", "PersonaService", "ServiceConfig"]

INVALIDATION_CHANNEL = "persona:invalidate"

log = logging.getLogger(__name__)

#: publish "<user> <current version>" (inside the flush's MULTI, right after the INCR)
_PUBLISH_VERSION = "return redis.call('publish', ARGV[1], ARGV[2] .. ' ' .. redis.call('get', KEYS[1]))"


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    cache_size: int = 100
    db_timeout_s: float = 0.5
    db_retry_after_s: float = 2.0
    stale_after_s: float = 600.0
    redis_timeout_s: float = 0.2
    #: the invalidation subscription counts as broken after this long without any message or PONG
    tracking_stale_s: float = 3.0


class PersonaService:
    def __init__(
        self,
        store: PersonaStore,
        redis: aioredis.Redis,
        config: ServiceConfig,
        metrics: AppMetrics | None = None,
    ) -> None:
        self.store = store
        self.redis = redis
        self.config = config
        self.buffer = RedisSignalBuffer(redis)
        self.idem = Idempotency(redis)
        self.locks = UserLocks(redis)
        self._cache: OrderedDict[str, tuple[str | None, UserState]] = OrderedDict()
        self._db_down_until = 0.0
        #: monotonic time until which the invalidation subscription is known to be alive
        self._tracking_until = 0.0
        #: bumped by every invalidation: a load that raced one is not cached
        self._epoch = 0
        self._stopping = False
        m = metrics or AppMetrics("persona_agent")
        self.m_decisions = m.counter(
            "decisions", "Persona decisions, by tone mode and state source.", ["tone", "source"]
        )
        self.m_signals = m.counter(
            "signals", "Feedback signals received, by type and outcome.", ["type", "outcome"]
        )
        self.m_flushes = m.counter("flushes", "Exchanges flushed, by outcome.", ["outcome"])
        self.m_cache = m.counter("profile_cache", "Profile LRU lookups, by result.", ["result"])

    # ------------------------------------------------------------------ state

    async def _version(self, user: str) -> str | None:
        try:
            raw = await self.redis.get(f"persona:ver:{user}")
        except Exception:  # Redis down: the cache stays valid until it comes back
            return "unknown"
        return raw.decode() if isinstance(raw, bytes) else (None if raw is None else str(raw))

    async def _bump(self, user: str, state: UserState) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(f"persona:ver:{user}")
            pipe.eval(_PUBLISH_VERSION, 1, f"persona:ver:{user}", INVALIDATION_CHANNEL, user)
            version, _ = await pipe.execute()
        self._remember(user, str(version), state)

    @property
    def tracking(self) -> bool:
        """True while the invalidation subscription is confirmed and alive."""
        return time.monotonic() < self._tracking_until

    def _invalidate(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else str(data)
        user, _, version = text.partition(" ")
        self._epoch += 1
        hit = self._cache.get(user)
        if hit is not None and hit[0] != version:
            del self._cache[user]

    async def stop_tracking(self, task: asyncio.Task[None], *, timeout_s: float = 3.0) -> None:
        """End :meth:`track_invalidations` (flag + cancel; bounded wait: redis-py's pub/sub may
        swallow a cancellation in flight, the flag ends the loop at its next turn)."""
        self._stopping = True
        self._tracking_until = 0.0
        task.cancel()
        await asyncio.wait({task}, timeout=timeout_s)

    async def track_invalidations(self, *, ping_every_s: float = 1.0) -> None:
        """Background task (one per worker): keep the subscription to :data:`INVALIDATION_CHANNEL`,
        reconnecting after failures; runs until cancelled or :meth:`stop_tracking`."""
        self._stopping = False
        while not self._stopping:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(INVALIDATION_CHANNEL)
                last_ping = 0.0
                while not self._stopping:
                    now = time.monotonic()
                    if now - last_ping >= ping_every_s:
                        await pubsub.ping()
                        last_ping = now
                    msg = await pubsub.get_message(timeout=ping_every_s)
                    if msg is None:
                        continue
                    if msg["type"] == "subscribe" and not self.tracking:
                        self._cache.clear()  # invalidations may have been missed meanwhile
                        self._epoch += 1
                    # any answer (subscribe confirmation, pong, message) proves the link alive
                    self._tracking_until = time.monotonic() + self.config.tracking_stale_s
                    if msg["type"] == "message":
                        self._invalidate(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._tracking_until = 0.0
                log.warning("persona cache invalidation subscription lost (%s); retrying", exc)
                await asyncio.sleep(0.5)
            finally:
                self._tracking_until = 0.0
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _remember(self, user: str, version: str | None, state: UserState) -> None:
        self._cache[user] = (version, state)
        self._cache.move_to_end(user)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    async def state_for(self, user_id: UUID, now: datetime) -> UserState:
        user = str(user_id)
        hit = self._cache.get(user)
        if hit is not None and self.tracking:
            self._cache.move_to_end(user)
            self.m_cache.labels("hit").inc()
            return hit[1].with_source("cache")
        epoch = self._epoch
        version = await self._version(user)
        if hit is not None and (version == "unknown" or hit[0] == version):
            self._cache.move_to_end(user)
            self.m_cache.labels("hit").inc()
            return hit[1].with_source("cache")
        self.m_cache.labels("miss").inc()
        if time.monotonic() < self._db_down_until:
            return (
                hit[1].with_source("cache:stale") if hit else UserState(source="defaults:shard_unavailable")
            )
        try:
            state = await self.store.load(user_id, now, timeout_s=self.config.db_timeout_s)
        except Exception as exc:
            self._db_down_until = time.monotonic() + self.config.db_retry_after_s
            self.store.connection_failed()
            log.warning("shard unavailable, answering from %s: %s", "cache" if hit else "defaults", exc)
            return (
                hit[1].with_source("cache:stale") if hit else UserState(source="defaults:shard_unavailable")
            )
        if epoch == self._epoch:
            self._remember(user, version if version != "unknown" else None, state)
        return state

    # ------------------------------------------------------------------ endpoints

    async def persona(self, req: PersonaRequest, now: datetime | None = None) -> dict[str, Any]:
        start = time.perf_counter()
        now = now or datetime.now(UTC)
        state = await self.state_for(req.user_id, now)
        out = decide(req, state, now)
        out["debug"]["timing_ms"] = round((time.perf_counter() - start) * 1000, 3)
        self.m_decisions.labels(out["debug"]["tone_mode"], state.source.split(":")[0]).inc()
        return out

    async def feedback(self, req: FeedbackRequest) -> dict[str, Any]:
        strength = req.signal_data.get("strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 1:
            raise ValueError("signal_data.strength must be a number between 0 and 1")
        signal = BufferedSignal(
            str(req.signal_id), req.exchange_id, req.signal_type, float(strength), time.time()
        )
        if not await self.idem.claim(f"signal:{req.signal_id}"):
            self.m_signals.labels(req.signal_type, "duplicate").inc()
            return {"buffered": True, "duplicate": True}
        try:
            await self.buffer.add(str(req.user_id), signal)
        except Exception:
            await self.idem.release(f"signal:{req.signal_id}")
            raise
        self.m_signals.labels(req.signal_type, "buffered").inc()
        return {"buffered": True, "duplicate": False}

    async def flush(self, req: FlushRequest, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        user = str(req.user_id)
        key = f"flush:{user}:{req.exchange_id}"
        async with self.locks.hold(user):
            previous = await self.idem.result(key)
            if previous is not None:
                self.m_flushes.labels("replay").inc()
                return previous
            signals, stale = await self.buffer.take(user, req.exchange_id, self.config.stale_after_s)

            def compute(done: frozenset[str], learned: Any, daily: Any) -> tuple[FeedbackOutcome, Any]:
                # signals of exchanges an earlier flush already applied (journal) are skipped
                resolution = resolve_signals([s for s in signals if s.exchange_id not in done])
                outcome = apply_signals(learned, resolution.kept, daily, now)

                def result_for(outcome: FeedbackOutcome, state: UserState) -> dict[str, Any]:
                    return {
                        "resolved": [
                            {
                                "signal_id": s.signal_id,
                                "exchange_id": s.exchange_id,
                                "signal_type": s.signal_type,
                            }
                            for s in resolution.kept
                        ],
                        "discarded": [
                            {"signal_id": s.signal_id, "signal_type": s.signal_type, "reason": why}
                            for s, why in resolution.discarded
                        ],
                        "applied": dict(sorted(outcome.applied.items())),
                        "stale_flushed": len(stale),
                        "relationship_stage": effective_stage(state.stage, now),
                        "temp_blocks": sorted({b.key for b in outcome.blocks}),
                    }

                return outcome, result_for

            # the journal row is committed with the state change: a retry after a crash (or a Redis
            # failure) past this point replays the stored result instead of applying again
            applied = await self.store.apply_flush(
                req.user_id,
                now,
                req.exchange_id,
                stale,
                compute,
                timeout_s=max(self.config.db_timeout_s, 2.0),
            )
            result = applied.result
            await self.idem.store_result(key, result)
            await self.buffer.drop(user, [req.exchange_id, *stale])
            await self._bump(user, applied.state)
        self.m_flushes.labels("replay_shard" if applied.replayed else "applied").inc()
        return result

    async def profile(self, user_id: UUID, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        state = await self.store.load(user_id, now, timeout_s=max(self.config.db_timeout_s, 2.0))
        row = state.stage
        return {
            "user_id": str(user_id),
            "known": state.known,
            "persona_profile": dict(sorted(state.profile.items())),
            "relationship_stage": {
                "stage": effective_stage(row, now),
                "stored_stage": row.stage,
                "sessions_count": row.sessions_count,
                "total_exchanges": row.total_exchanges,
                "positive_signals_count": row.positive_signals_count,
                "last_active_at": row.last_active_at.isoformat() if row.last_active_at else None,
            },
            "temp_blocks": [
                {"key": b.key, "until": b.until.isoformat(), "reason": b.reason}
                for b in state.active_blocks(now)
            ],
        }
