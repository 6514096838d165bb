"""The shard_ha scenario's own fixture: bench/failover.py's helpers (the code `make bench-failover`
runs). The lab fixtures, the lab vault (``secrets``) and the failure hook come from
molecule/conftest.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_failover = _load("unde_bench_failover", REPO_ROOT / "bench" / "failover.py")


@pytest.fixture(scope="session")
def ha() -> ModuleType:
    """bench/failover.py: cluster(), leader(), routing(), labctl(), ssh(), switchover(), failover(), ..."""
    return _failover
