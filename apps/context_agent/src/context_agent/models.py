"""``POST /context`` request (spec 02 §15)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["CompactPreferences", "ContextRequest"]


class CompactPreferences(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    favorite_brands: list[str] = Field(default_factory=list, max_length=50)
    allergies: list[str] = Field(default_factory=list, max_length=50)
    interests: list[str] = Field(default_factory=list, max_length=50)
    cultural_sensitivity_level: Literal["high", "medium", "low"] = "medium"


class ContextRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: UUID
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    mall_id: str | None = Field(default=None, max_length=100)
    #: floor from the app's indoor positioning, when it has one
    floor: int | None = Field(default=None, ge=-5, le=200)
    compact_preferences: CompactPreferences = CompactPreferences()
    #: evaluate as of this moment (replays, tests); default now
    at: AwareDatetime | None = None

    def moment(self) -> datetime | None:
        return self.at
