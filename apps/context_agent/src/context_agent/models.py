"""``POST /context`` request (spec 02 §15)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from unde_common.web import SafeId

__all__ = ["AT_YEARS", "CompactPreferences", "ContextRequest"]

#: the years ``at`` may name: every local time, the day before and after it (closing hours past
#: midnight) and the calendar's holidays stay inside what ``datetime`` can represent
AT_YEARS = (1900, 2200)


def _in_years(value: datetime) -> datetime:
    if not AT_YEARS[0] <= value.year <= AT_YEARS[1]:
        raise ValueError(f"year must be between {AT_YEARS[0]} and {AT_YEARS[1]}")
    return value


class CompactPreferences(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    favorite_brands: list[str] = Field(default_factory=list, max_length=50)
    allergies: list[str] = Field(default_factory=list, max_length=50)
    interests: list[str] = Field(default_factory=list, max_length=50)
    cultural_sensitivity_level: Literal["high", "medium", "low"] = "medium"


class ContextRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    user_id: UUID
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    mall_id: SafeId | None = None
    #: floor from the app's indoor positioning, when it has one
    floor: int | None = Field(default=None, ge=-5, le=200)
    compact_preferences: CompactPreferences = CompactPreferences()
    #: evaluate as of this moment (replays, tests); default now
    at: Annotated[AwareDatetime, AfterValidator(_in_years)] | None = None

    def moment(self) -> datetime | None:
        return self.at
