"""Routes of the gateway (account): filled in by its module owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
