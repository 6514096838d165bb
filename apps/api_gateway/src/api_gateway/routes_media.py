"""Routes of the gateway (media): filled in by its module owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
