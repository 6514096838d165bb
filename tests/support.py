"""Constants and types shared by the repository-level tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

InventoryEditor = Callable[[Callable[[dict[str, Any], dict[str, Any]], None]], str]
