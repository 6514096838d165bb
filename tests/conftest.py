"""Shared fixtures for the repository-level tests (tools, inventories, vault)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO, InventoryEditor


@pytest.fixture
def broken_inventories(tmp_path: Path) -> InventoryEditor:
    """Copy both site inventories to tmp, let the test edit them, return the INVENTORY value."""

    def make(edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> str:
        dirs = {}
        docs = {}
        for site in ("helsinki", "local"):
            d = tmp_path / site
            d.mkdir()
            shutil.copy(REPO / f"inventories/{site}/hosts.yml", d / "hosts.yml")
            dirs[site] = d
            docs[site] = yaml.safe_load((d / "hosts.yml").read_text())
        edit(docs["helsinki"]["all"]["children"], docs["local"]["all"]["children"])
        for site, d in dirs.items():
            (d / "hosts.yml").write_text(yaml.safe_dump(docs[site], sort_keys=False))
        return f"{dirs['helsinki']},{dirs['local']}"

    return make
