"""The per-user persona state the rules read (loaded from the shard, cached in an LRU)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from persona_contract.stages import INACTIVITY_DOWNGRADE_DAYS

__all__ = ["StageRow", "TempBlock", "UserState", "effective_stage"]


@dataclass(frozen=True, slots=True)
class StageRow:
    stage: int = 0
    stage_updated_at: datetime | None = None
    sessions_count: int = 0
    total_exchanges: int = 0
    positive_signals_count: int = 0
    last_active_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TempBlock:
    key: str
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class UserState:
    """``known`` is False for a user the shard has never seen (defaults apply)."""

    profile: dict[str, float] = field(default_factory=dict)
    stage: StageRow = StageRow()
    temp_blocks: tuple[TempBlock, ...] = ()
    known: bool = False
    source: str = "defaults"

    def active_blocks(self, now: datetime) -> tuple[TempBlock, ...]:
        return tuple(b for b in self.temp_blocks if b.until > now)

    def with_source(self, source: str) -> UserState:
        return replace(self, source=source)


def effective_stage(row: StageRow, now: datetime) -> int:
    """The stage after inactivity downgrades (one stage per elapsed period, counted from the later of
    the last activity and the last stage change)."""
    stage = row.stage
    refs = [t for t in (row.last_active_at, row.stage_updated_at) if t is not None]
    if not refs or stage == 0:
        return stage
    elapsed = now - max(refs)
    while stage > 0 and elapsed >= timedelta(days=INACTIVITY_DOWNGRADE_DAYS[stage]):
        elapsed -= timedelta(days=INACTIVITY_DOWNGRADE_DAYS[stage])
        stage -= 1
    return stage
