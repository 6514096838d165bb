"""SituationalRulesEngine: budget, weight, time of day / mall closing, future events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from persona_agent.models import ContextFrame, UserKnowledgeCompact
from persona_agent.rule_priority import HardBan

__all__ = ["Situation", "situational"]

FUTURE_EVENT_HORIZON_DAYS = 30


@dataclass(slots=True)
class Situation:
    bans: list[HardBan] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    upcoming_events: list[dict[str, object]] = field(default_factory=list)
    premium_upsell_allowed: bool = True


def situational(
    uk: UserKnowledgeCompact, ctx: ContextFrame, budget_sensitivity: float, now: datetime
) -> Situation:
    out = Situation()
    budget = uk.budget
    if budget.tier == "tight" or budget_sensitivity >= 0.7:
        out.rules.append("budget")
        out.premium_upsell_allowed = False
        out.bans.append(HardBan("budget_sensitivity", "min", 0.7, "budget"))
        ceiling = (
            f" (at most {budget.max_item_price:g} {budget.currency} per item)"
            if budget.max_item_price
            else ""
        )
        out.lines.append(f"Respect the user's budget{ceiling}; never push premium alternatives.")
    elif budget.max_item_price:
        out.rules.append("budget_ceiling")
        out.lines.append(f"Prefer items up to {budget.max_item_price:g} {budget.currency}.")

    if uk.body.weight_sensitive or uk.body.weight_goal:
        out.rules.append("weight")
        out.bans.append(HardBan("body_topic_caution", "min", 0.9, "weight"))
        out.lines.append("Never comment on weight or body size; talk about fit, fabric and silhouette only.")

    tc = ctx.environment.time_context
    if tc.part_of_day == "night":
        out.rules.append("time:night")
        out.bans.append(HardBan("verbosity", "max", 0.4, "time:night"))
        out.lines.append("It is late: keep it short and calm.")
    if tc.mall_closes_in_hours is not None and tc.mall_closes_in_hours < 1.0:
        out.rules.append("time:mall_closing")
        out.lines.append(
            f"The mall closes in about {round(tc.mall_closes_in_hours * 60)} minutes:"
            " prioritise what is reachable now."
        )
    cultural = ctx.cultural
    if cultural.is_pre_meal_break and cultural.next_meal_break and cultural.sensitivity_level != "low":
        out.rules.append("time:pre_meal_break")
        out.lines.append(f"Suggest plans that fit around the meal break at {cultural.next_meal_break}.")
    elif cultural.active_period == "ramadan" and cultural.sensitivity_level == "low":
        out.rules.append("time:daytime_fasting")
        out.lines.append("Do not suggest food or drinks in the daytime.")

    today = now.date()
    for event in sorted(uk.life_events, key=lambda e: e.date):
        days = (date.fromisoformat(event.date) - today).days
        if 0 <= days <= FUTURE_EVENT_HORIZON_DAYS:
            out.upcoming_events.append(
                {"type": event.type, "in_days": days, "title": event.title or event.type}
            )
    if out.upcoming_events:
        out.rules.append("future_events")
    return out
