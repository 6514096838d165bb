"""The persona agent's state on the user data shard (``unde_shard``).

Tables: ``relationship_stage`` (persisted stage + counters), ``persona_temp_blocks`` (one row per
(user, key), at most :data:`MAX_TEMP_BLOCKS` per user), ``signal_daily_deltas`` (net change per
field and UTC day, kept :data:`DAILY_DELTAS_KEEP_DAYS` days) and ``persona_profiles`` (learned
values, migration 0004).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from persona_agent.feedback_processor import FeedbackOutcome
from persona_agent.state import StageRow, TempBlock, UserState, effective_stage
from persona_contract import CONTRACT_VERSION
from persona_contract.fields import CANONICAL_FIELDS
from persona_contract.stages import MAX_STAGE, SESSION_GAP_MINUTES, STAGE_REQUIREMENTS
from unde_common.shard_router import ShardRouter

__all__ = [
    "DAILY_DELTAS_KEEP_DAYS",
    "FLUSH_JOURNAL_KEEP_HOURS",
    "MAX_TEMP_BLOCKS",
    "CleanupReport",
    "FlushApplied",
    "PersonaStore",
    "next_stage",
]

MAX_TEMP_BLOCKS = 20
DAILY_DELTAS_KEEP_DAYS = 7
#: flush journal rows are kept as long as the Redis idempotency results (72 h)
FLUSH_JOURNAL_KEEP_HOURS = 72
_FIELDS = frozenset(CANONICAL_FIELDS)

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]


#: compute(already_applied_exchanges, learned, daily) -> (outcome, result_for(outcome, new_state))
FlushCompute = Callable[
    [frozenset[str], Mapping[str, float], Mapping[str, float]],
    tuple[FeedbackOutcome, Callable[[FeedbackOutcome, UserState], dict[str, Any]]],
]


@dataclass(frozen=True, slots=True)
class FlushApplied:
    result: dict[str, Any]
    state: UserState
    #: the journal already held this exchange: nothing was applied
    replayed: bool


@dataclass(frozen=True, slots=True)
class CleanupReport:
    expired_blocks: int
    old_deltas: int
    downgraded: int
    old_flushes: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.expired_blocks, self.old_deltas, self.downgraded, self.old_flushes)

    def as_dict(self) -> dict[str, int]:
        return {
            "expired_blocks": self.expired_blocks,
            "old_deltas": self.old_deltas,
            "downgraded": self.downgraded,
            "old_flushes": self.old_flushes,
        }


def next_stage(row: StageRow, now: datetime) -> int:
    """``row.stage`` + 1 when every requirement of the next stage holds, else ``row.stage``."""
    target = row.stage + 1
    if target > MAX_STAGE:
        return row.stage
    req = STAGE_REQUIREMENTS[target]
    since = now - (row.stage_updated_at or now)
    if (
        row.sessions_count >= req.min_sessions
        and row.total_exchanges >= req.min_exchanges
        and row.positive_signals_count >= req.min_positive_signals
        and since >= timedelta(days=req.min_days_since_previous)
    ):
        return target
    return row.stage


class PersonaStore:
    """The persona tables of every user on the user's shard: ``pools`` is a
    :class:`unde_common.shard_router.ShardRouter` (user → shard → current primary, following the
    routing cache on failover), or one pool (tests, tools working on one shard)."""

    def __init__(self, pools: Pool | ShardRouter) -> None:
        self.router = pools if isinstance(pools, ShardRouter) else None
        self.pool = pools if not isinstance(pools, ShardRouter) else None

    async def pool_for(self, user_id: UUID) -> Pool:
        if self.router is not None:
            return await self.router.pool_for_user(user_id)
        assert self.pool is not None
        return self.pool

    async def shard_pools(self) -> list[Pool]:
        """The current primary of every shard (the daily job cleans each)."""
        if self.router is not None:
            return [await self.router.pool(i) for i in range(self.router.shard_count)]
        assert self.pool is not None
        return [self.pool]

    def connection_failed(self) -> None:
        """A shard connection failed: re-read the routing cache on the next use (failover)."""
        if self.router is not None:
            self.router.invalidate()

    async def load(self, user_id: UUID, now: datetime, *, timeout_s: float) -> UserState:
        pool = await self.pool_for(user_id)
        async with pool.connection(timeout=timeout_s) as conn:
            return await self._load(conn, user_id, now)

    async def _load(self, conn: AsyncConnection[TupleRow], user_id: UUID, now: datetime) -> UserState:
        cur = await conn.execute(
            "SELECT stage, stage_updated_at, sessions_count, total_exchanges, positive_signals_count,"
            " last_active_at FROM relationship_stage WHERE user_id = %s",
            (user_id,),
        )
        row = await cur.fetchone()
        cur = await conn.execute(
            "SELECT key, until, reason FROM persona_temp_blocks"
            " WHERE user_id = %s AND until > %s ORDER BY key",
            (user_id, now),
        )
        blocks = tuple(TempBlock(k, u, r) for k, u, r in await cur.fetchall())
        cur = await conn.execute("SELECT profile FROM persona_profiles WHERE user_id = %s", (user_id,))
        prof = await cur.fetchone()
        profile: dict[str, float] = {}
        if prof is not None:
            profile = {k: float(v) for k, v in dict(prof[0]).items() if k in _FIELDS}
        stage = StageRow(*row) if row is not None else StageRow()
        known = row is not None or prof is not None or bool(blocks)
        return UserState(profile=profile, stage=stage, temp_blocks=blocks, known=known, source="shard")

    async def daily_deltas(
        self, conn: AsyncConnection[TupleRow], user_id: UUID, day: date
    ) -> dict[str, float]:
        cur = await conn.execute(
            "SELECT field, total_delta FROM signal_daily_deltas WHERE user_id = %s AND date = %s",
            (user_id, day),
        )
        return {f: float(v) for f, v in await cur.fetchall()}

    async def apply_flush(
        self,
        user_id: UUID,
        now: datetime,
        exchange_id: str,
        stale: Sequence[str],
        compute: FlushCompute,
        *,
        timeout_s: float,
        initial_stage: int = 0,
    ) -> FlushApplied:
        """One flush, in one shard transaction: lock the user's stage row; if the flush journal
        (``persona_applied_flushes``, migration 0005) already holds ``exchange_id`` with a result,
        answer it (``replayed``) and change nothing. Otherwise ``compute(already_applied, learned,
        daily)`` — ``already_applied`` names the exchanges among ``exchange_id`` and ``stale``
        whose signals an earlier flush applied (skip them) — gives the outcome and how to build
        the result from the new state; store the profile, daily deltas, blocks and stage counters
        (upgrade when due) and journal
        the exchange (with its result) and the stale ones, all before the commit."""
        exchanges = [exchange_id, *(e for e in stale if e != exchange_id)]
        pool = await self.pool_for(user_id)
        async with pool.connection(timeout=timeout_s) as conn, conn.transaction():
            await self._lock_user(conn, user_id, now, initial_stage)
            cur = await conn.execute(
                "SELECT exchange_id, result FROM persona_applied_flushes"
                " WHERE user_id = %s AND exchange_id = ANY(%s)",
                (user_id, exchanges),
            )
            journal = {str(e): r for e, r in await cur.fetchall()}
            if journal.get(exchange_id) is not None:
                return FlushApplied(dict(journal[exchange_id]), await self._load(conn, user_id, now), True)
            state = await self._load(conn, user_id, now)
            daily = await self.daily_deltas(conn, user_id, now.date())
            outcome, result_for = compute(frozenset(journal), state.profile, daily)
            new_state = await self._apply(conn, user_id, now, state, outcome)
            result = result_for(outcome, new_state)
            await conn.execute(
                "INSERT INTO persona_applied_flushes (user_id, exchange_id, applied_with, result, applied_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, exchange_id)"
                " DO UPDATE SET result = EXCLUDED.result, applied_at = EXCLUDED.applied_at",
                (user_id, exchange_id, exchange_id, Jsonb(result), now),
            )
            for other in exchanges[1:]:
                if other not in journal:
                    await conn.execute(
                        "INSERT INTO persona_applied_flushes (user_id, exchange_id, applied_with, applied_at)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (user_id, exchange_id) DO NOTHING",
                        (user_id, other, exchange_id, now),
                    )
        return FlushApplied(result, new_state, False)

    async def _lock_user(
        self, conn: AsyncConnection[TupleRow], user_id: UUID, now: datetime, initial_stage: int
    ) -> None:
        await conn.execute(
            "INSERT INTO relationship_stage (user_id, stage, stage_updated_at, last_active_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (user_id) DO NOTHING",
            (user_id, initial_stage, now, now),
        )
        await conn.execute("SELECT 1 FROM relationship_stage WHERE user_id = %s FOR UPDATE", (user_id,))

    async def _apply(
        self,
        conn: AsyncConnection[TupleRow],
        user_id: UUID,
        now: datetime,
        state: UserState,
        outcome: FeedbackOutcome,
    ) -> UserState:
        """Store ``outcome`` and the stage counters (the caller holds the stage-row lock)."""
        await self._store_outcome(conn, user_id, now, outcome)
        row = state.stage
        stage = effective_stage(row, now)
        new_session = row.last_active_at is None or now - row.last_active_at > timedelta(
            minutes=SESSION_GAP_MINUTES
        )
        if row.total_exchanges == 0 and row.sessions_count == 0:
            new_session = True
        updated = StageRow(
            stage=stage,
            stage_updated_at=row.stage_updated_at if stage == row.stage else now,
            sessions_count=row.sessions_count + (1 if new_session else 0),
            total_exchanges=row.total_exchanges + max(1, outcome.exchanges),
            positive_signals_count=row.positive_signals_count + outcome.positive_signals,
            last_active_at=now,
        )
        upgraded = next_stage(updated, now)
        if upgraded != updated.stage:
            updated = StageRow(
                stage=upgraded,
                stage_updated_at=now,
                sessions_count=updated.sessions_count,
                total_exchanges=updated.total_exchanges,
                positive_signals_count=updated.positive_signals_count,
                last_active_at=now,
            )
        await conn.execute(
            "UPDATE relationship_stage SET stage = %s, stage_updated_at = %s, sessions_count = %s,"
            " total_exchanges = %s, positive_signals_count = %s, last_active_at = %s WHERE user_id = %s",
            (
                updated.stage,
                updated.stage_updated_at,
                updated.sessions_count,
                updated.total_exchanges,
                updated.positive_signals_count,
                updated.last_active_at,
                user_id,
            ),
        )
        return await self._load(conn, user_id, now)

    async def _store_outcome(
        self, conn: AsyncConnection[TupleRow], user_id: UUID, now: datetime, outcome: FeedbackOutcome
    ) -> None:
        if outcome.applied:
            await conn.execute(
                "INSERT INTO persona_profiles (user_id, profile, contract_version, updated_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET"
                " profile = persona_profiles.profile || EXCLUDED.profile,"
                " contract_version = EXCLUDED.contract_version, updated_at = EXCLUDED.updated_at",
                (user_id, Jsonb({k: outcome.profile[k] for k in outcome.applied}), CONTRACT_VERSION, now),
            )
            for name, delta in sorted(outcome.applied.items()):
                await conn.execute(
                    "INSERT INTO signal_daily_deltas (user_id, field, date, total_delta)"
                    " VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (user_id, field, date) DO UPDATE"
                    " SET total_delta = signal_daily_deltas.total_delta + EXCLUDED.total_delta",
                    (user_id, name, now.date(), delta),
                )
        for block in outcome.blocks:
            await conn.execute(
                "INSERT INTO persona_temp_blocks (user_id, key, until, reason) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (user_id, key) DO UPDATE SET until = GREATEST(persona_temp_blocks.until,"
                " EXCLUDED.until), reason = EXCLUDED.reason",
                (user_id, block.key, block.until, block.reason),
            )
        if outcome.blocks:
            await self.trim_blocks(conn, user_id, now)

    async def trim_blocks(self, conn: AsyncConnection[TupleRow], user_id: UUID, now: datetime) -> None:
        """Drop expired blocks, then the soonest-expiring beyond :data:`MAX_TEMP_BLOCKS`."""
        await conn.execute(
            "DELETE FROM persona_temp_blocks WHERE user_id = %s AND until <= %s", (user_id, now)
        )
        await conn.execute(
            "DELETE FROM persona_temp_blocks WHERE id IN"
            " (SELECT id FROM persona_temp_blocks WHERE user_id = %s"
            " ORDER BY until DESC, created_at DESC OFFSET %s)",
            (user_id, MAX_TEMP_BLOCKS),
        )

    async def add_blocks(
        self, user_id: UUID, blocks: Sequence[TempBlock], now: datetime, *, timeout_s: float
    ) -> None:
        pool = await self.pool_for(user_id)
        async with pool.connection(timeout=timeout_s) as conn, conn.transaction():
            await self._store_outcome(conn, user_id, now, FeedbackOutcome(profile={}, blocks=list(blocks)))

    async def cleanup(self, now: datetime, *, timeout_s: float = 30.0) -> CleanupReport:
        """The daily 04:00 job on every shard: expired blocks, deltas older than 7 days,
        inactivity downgrades."""
        total = CleanupReport(0, 0, 0, 0)
        for pool in await self.shard_pools():
            one = await self._cleanup(pool, now, timeout_s)
            total = CleanupReport(*(a + b for a, b in zip(total.as_tuple(), one.as_tuple(), strict=True)))
        return total

    async def _cleanup(self, pool: Pool, now: datetime, timeout_s: float) -> CleanupReport:
        async with pool.connection(timeout=timeout_s) as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM persona_temp_blocks WHERE until <= %s", (now,))
            expired = cur.rowcount
            cur = await conn.execute(
                "DELETE FROM signal_daily_deltas WHERE date < %s",
                (now.date() - timedelta(days=DAILY_DELTAS_KEEP_DAYS - 1),),
            )
            old = cur.rowcount
            cur = await conn.execute(
                "DELETE FROM persona_applied_flushes WHERE applied_at < %s",
                (now - timedelta(hours=FLUSH_JOURNAL_KEEP_HOURS),),
            )
            old_flushes = cur.rowcount
            cur = await conn.execute(
                "SELECT user_id, stage, stage_updated_at, sessions_count, total_exchanges,"
                " positive_signals_count, last_active_at FROM relationship_stage WHERE stage > 0"
                " AND last_active_at < %s FOR UPDATE",
                (now - timedelta(days=45),),
            )
            downgraded = 0
            for user_id, *rest in await cur.fetchall():
                row = StageRow(*rest)
                stage = effective_stage(row, now)
                if stage != row.stage:
                    await conn.execute(
                        "UPDATE relationship_stage SET stage = %s, stage_updated_at = %s WHERE user_id = %s",
                        (stage, now, user_id),
                    )
                    downgraded += 1
        return CleanupReport(expired, old, downgraded, old_flushes)
