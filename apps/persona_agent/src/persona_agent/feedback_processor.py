"""FeedbackProcessor: apply resolved signals to the learned profile under the momentum caps.

For each exchange (in order) and field: the summed effect (x strength) is clipped to the field's
per-exchange cap, then clipped so that the day's net change (``signal_daily_deltas``) stays within
the per-day cap, then the value is clipped to [0, 1]. What actually moved is recorded. Temporary
blocks of rejection signals are returned for storage (an existing block of the same key is
extended, see the store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from persona_agent.signal_buffer import BufferedSignal
from persona_agent.state import TempBlock
from persona_contract.fields import DEFAULTS
from persona_contract.momentum import limit_for
from persona_contract.signals import POSITIVE_SIGNALS, SIGNAL_EFFECTS, TEMP_BLOCKS

__all__ = ["FeedbackOutcome", "apply_signals"]

_EPS = 1e-9


@dataclass(slots=True)
class FeedbackOutcome:
    profile: dict[str, float]
    applied: dict[str, float] = field(default_factory=dict)
    daily: dict[str, float] = field(default_factory=dict)
    blocks: list[TempBlock] = field(default_factory=list)
    positive_signals: int = 0
    exchanges: int = 0


def _clip(value: float, bound: float) -> float:
    return max(-bound, min(bound, value))


def apply_signals(
    learned: Mapping[str, float],
    kept: Sequence[BufferedSignal],
    daily_before: Mapping[str, float],
    now: datetime,
) -> FeedbackOutcome:
    profile = {**DEFAULTS, **learned}
    daily = dict(daily_before)
    out = FeedbackOutcome(profile=dict(learned))
    by_exchange: dict[str, list[BufferedSignal]] = {}
    for sig in kept:
        by_exchange.setdefault(sig.exchange_id, []).append(sig)
    out.exchanges = len(by_exchange)
    for exchange in sorted(by_exchange, key=lambda e: min(s.received_at for s in by_exchange[e])):
        raw: dict[str, float] = {}
        for sig in by_exchange[exchange]:
            strength = min(1.0, max(0.0, sig.strength))
            for name, delta in SIGNAL_EFFECTS[sig.signal_type].items():
                raw[name] = raw.get(name, 0.0) + delta * strength
            if sig.signal_type in POSITIVE_SIGNALS:
                out.positive_signals += 1
            rule = TEMP_BLOCKS.get(sig.signal_type)
            if rule is not None:
                out.blocks.append(TempBlock(rule.key, now + timedelta(hours=rule.hours), rule.reason))
        for name in sorted(raw):
            limit = limit_for(name)
            step = _clip(raw[name], limit.per_exchange)
            today = daily.get(name, 0.0)
            step = _clip(today + step, limit.per_day) - today
            old = profile[name]
            new = min(1.0, max(0.0, old + step))
            moved = new - old
            if abs(moved) < _EPS:
                continue
            profile[name] = round(new, 6)
            moved = profile[name] - old
            daily[name] = round(today + moved, 6)
            out.applied[name] = round(out.applied.get(name, 0.0) + moved, 6)
            out.profile[name] = profile[name]
    out.daily = {k: v for k, v in daily.items() if k in out.applied or k in daily_before}
    return out
