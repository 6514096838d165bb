"""Constants and types shared by the repository-level tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

InventoryEditor = Callable[[Callable[[dict[str, Any], dict[str, Any]], None]], str]


def nft_check(text: str, tmp_path: Path) -> None:
    """``nft -c`` accepts the ruleset ``text`` (skipped where nft or CAP_NET_ADMIN is missing)."""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not Path(nft).exists():
        pytest.skip("nft is not installed")
    path = tmp_path / "nftables.conf"
    path.write_text(text)
    res = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    if res.returncode != 0 and "Operation not permitted" in res.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert res.returncode == 0, res.stderr
